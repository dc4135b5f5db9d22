#pragma once
// The Store on etcd v3's JSON gateway (measured behaviour: reference notes in the README's
// "etcd" section): base64 keys, int64 as strings, omitted defaults, keepalive as one POST,
// watch as an endless NDJSON stream, ambiguous 5xx/timeouts on writes.
#include <deque>

#include "common/json.hpp"

#include "store/http.hpp"
#include "store/store.hpp"

namespace prom::store {

struct EtcdSettings {
    std::vector<std::string> endpoints;
    std::string prefix = "/prom";
    std::string app;
    std::string self;
    std::string user;
    std::string password;
    std::chrono::milliseconds requestTimeout{2000};
    /** A watch silent this long is reopened (a dead TCP peer says nothing). */
    std::chrono::milliseconds watchSilence{std::chrono::minutes(5)};
};

class Etcd : public Store {
public:
    Etcd(sd::EventLoop& loop, Http& http, EtcdSettings settings);
    ~Etcd() override;

    void grantLease(core::Duration ttl, std::function<void(Result<Lease>)> done) override;
    void keepAlive(std::int64_t lease, std::function<void(Result<std::optional<core::Duration>>)> done) override;
    void revokeLease(std::int64_t lease, std::function<void(Result<Ok>)> done) override;
    void readLeader(std::function<void(Result<core::LeaderRead>)> done) override;
    void campaign(std::int64_t lease, std::function<void(Result<core::CampaignResult>)> done) override;
    void campaignFast(std::int64_t lease, std::function<void(Result<core::CampaignResult>)> done) override;
    void deleteLeader(std::int64_t createRevision, std::function<void(Result<Ok>)> done) override;
    void watchLeader(std::int64_t fromRevision, std::function<void(const core::WatchEvent&)> onEvent,
                     std::function<void(const std::string&)> onBroken) override;
    void cancelWatch() override;
    void markHandover(std::int64_t createRevision, std::int64_t lease, const std::string& target,
                      std::function<void(Result<Ok>)> done) override;
    void putMember(std::int64_t lease, std::function<void(Result<Ok>)> done) override;
    void readMembers(std::function<void(Result<std::vector<std::string>>)> done) override;
    std::uint64_t requestCount() const override { return m_http.requestCount(); }

    const std::string& leaderKey() const { return m_leaderKey; }

private:
    void campaignAs(std::int64_t lease, bool fast, std::function<void(Result<core::CampaignResult>)> done);
    using Reply = std::function<void(Result<std::string>)>;
    /** One unary RPC: tries the endpoints in order while the request cannot have reached a
     *  server, authenticates when needed; Error for transport failures and non-2xx replies. */
    void call(const std::string& path, const std::string& body, Reply done, std::size_t attempt = 0, bool reauth = false);
    void authenticate(std::function<void(Result<Ok>)> done);
    void onWatchData(std::string_view chunk);
    void breakWatch(const std::string& why);
    void armSilenceCheck();
    std::vector<std::string> headers() const;

    sd::EventLoop& m_loop;
    Http& m_http;
    EtcdSettings m_s;
    std::string m_leaderKey;
    std::string m_membersPrefix;
    std::size_t m_endpoint = 0;
    std::string m_token;
    bool m_authenticating = false;
    std::vector<std::function<void(Result<Ok>)>> m_authWaiters;

    RequestId m_watchRequest = 0;
    bool m_watchSuspect = false;
    std::string m_watchBuffer;
    std::function<void(const core::WatchEvent&)> m_onEvent;
    std::function<void(const std::string&)> m_onBroken;
    sd::Source m_watchTimer;
    sd::Source m_watchDefer;
    std::vector<RequestId> m_toCancel;
    core::TimePoint m_lastWatchData{};
    std::shared_ptr<bool> m_alive = std::make_shared<bool>(true);
};

/** Parses a KeyValue object of etcd's JSON (int64 as strings, omitted defaults). The leader
 *  key's value is the holder's replica id, or "ID>TARGET" while the holder hands over. */
core::LeaderKey parseLeaderKv(const json::Value& kv);

}  // namespace prom::store

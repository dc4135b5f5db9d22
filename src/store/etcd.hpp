#pragma once
// The Store on etcd v3's JSON gateway (measured behaviour: reference notes in the README's
// "etcd" section): base64 keys, int64 as strings, omitted defaults, keepalive as one POST,
// watch as an endless NDJSON stream, ambiguous 5xx/timeouts on writes.
#include <deque>
#include <map>
#include <memory>

#include "common/json.hpp"
#include "store/endpoints.hpp"
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
    /** How long the watch's member may go without proving that it is alive (a whole watch
     *  line, or an answered request) before it is probed; a probe that fails, or a member that
     *  fails any request, moves the watch to another member. 0 = a third of the lease TTL the
     *  core asked for (the keepalive period), or requestTimeout before any grant. A JSON-gateway
     *  watch cannot ask for progress, and a dead TCP peer says nothing. */
    std::chrono::milliseconds watchSilence{0};
    /** The lease TTL prom asks for: a TTL etcd reports beyond it is clamped to it. 0 = the TTL
     *  of the last grant, or kMaxTrustedTtl before any. */
    std::chrono::milliseconds leaseTtl{0};
    /** Seed of the backoff jitter (0 = from the clock). */
    std::uint64_t seed = 0;
};

/** Longest TTL believed from etcd when prom has not said what it asked for (resumed lease). */
inline constexpr core::Duration kMaxTrustedTtl{std::chrono::hours(1)};

class Etcd : public Store {
public:
    Etcd(sd::EventLoop& loop, Http& http, EtcdSettings settings);
    ~Etcd() override;

    void grantLease(core::Duration ttl, std::function<void(Result<Lease>)> done) override;
    void keepAlive(std::int64_t lease, std::function<void(Result<std::optional<core::Duration>>)> done) override;
    void revokeLease(std::int64_t lease, std::function<void(Result<Ok>)> done) override;
    void readLeader(std::function<void(Result<core::LeaderRead>)> done) override;
    void campaign(std::int64_t lease, bool fast, std::function<void(Result<core::CampaignResult>)> done) override;
    void deleteLeader(std::int64_t createRevision, std::function<void(Result<Ok>)> done) override;
    void watchLeader(std::int64_t fromRevision, std::function<void(const core::WatchEvent&)> onEvent,
                     std::function<void(const std::string&)> onBroken) override;
    void cancelWatch() override;
    void markHandover(std::int64_t createRevision, std::int64_t lease, const std::string& target,
                      std::function<void(Result<Ok>)> done) override;
    void putMember(std::int64_t lease, const MemberInfo& info, std::function<void(Result<Ok>)> done) override;
    void readMembers(std::function<void(Result<std::vector<MemberInfo>>)> done) override;
    bool hasControl() const override { return true; }
    void onControl(std::function<void(const ControlState&)> listener) override { m_onControl = std::move(listener); }
    void putPause(const ClusterPause& pause, std::function<void(Result<Ok>)> done) override;
    void putRequest(const ControlRequest& request, std::int64_t lease, std::function<void(Result<Ok>)> done) override;
    void answerRequest(const ControlRequest& request, const ControlReply& reply,
                       std::function<void(Result<Ok>)> done) override;
    std::uint64_t requestCount() const override { return m_http.requestCount(); }

    const std::string& leaderKey() const { return m_leaderKey; }

    /** Endpoint bookkeeping (tests). */
    const Endpoints& endpoints() const { return m_endpoints; }

private:
    /** Whether our last campaign made a fast key: a handover mark keeps the marker. */
    bool m_campaignedFast = false;
    using Reply = std::function<void(Result<json::Value>)>;
    /** Whether a request carries the auth token (and so waits while one is being fetched). */
    enum class Auth { Token, None };
    struct Call;
    /** One unary RPC: tries each endpoint at most once (any failure moves on: refused,
     *  timed out, no leader, 5xx, 3xx, a body that is not bounded JSON), after the backoff of
     *  a round that failed everywhere; authenticates first when needed. The reply is the parsed
     *  body of a 2xx, or an Error (a 4xx the endpoint stood behind, or every endpoint failed). */
    void call(const std::string& path, const std::string& body, Reply done, Auth auth = Auth::Token);
    void start(const std::shared_ptr<Call>& c);
    void attempt(const std::shared_ptr<Call>& c);
    void onReply(const std::shared_ptr<Call>& c, std::size_t index, HttpResponse resp);
    void later(core::TimePoint at, std::function<void()> fn);
    void authenticate(std::function<void(Result<Ok>)> done);
    void endpointFailed(std::size_t index, const std::string& why);
    void openWatch();
    void onWatchData(std::string_view chunk);
    void breakWatch(const std::string& why);
    void armWatchCheck();
    void checkWatch();
    void probeWatchMember();
    core::Duration silenceLimit() const;
    core::Duration clampTtl(std::int64_t lease, std::int64_t seconds) const;
    std::vector<std::string> headers(Auth auth = Auth::Token) const;

    sd::EventLoop& m_loop;
    Http& m_http;
    EtcdSettings m_s;
    Endpoints m_endpoints;
    std::string m_leaderKey;
    std::string m_membersPrefix;
    std::string m_appPrefix;      ///< PREFIX/APP/
    std::string m_controlPrefix;  ///< PREFIX/APP/control/
    /** The control keys as of the last leader read and the watch events since. */
    ControlState m_control;
    std::function<void(const ControlState&)> m_onControl;
    /** readLeader, with the control requests or (too large to read) only the cluster pause. */
    void readLeaderWith(bool withRequests, std::function<void(Result<core::LeaderRead>)> done);
    /** Applies a kv (or a delete, value nullopt) of the app prefix to m_control. */
    bool applyControl(const std::string& key, const std::optional<std::string>& value, std::int64_t lease,
                      std::int64_t revision);
    std::string m_token;
    bool m_authenticating = false;
    std::vector<std::function<void(Result<Ok>)>> m_authWaiters;
    std::map<std::uint64_t, sd::Source> m_timers;  ///< delayed requests
    std::uint64_t m_nextTimer = 0;
    core::Duration m_askedTtl{0};
    std::map<std::int64_t, core::Duration> m_leaseTtls;  ///< TTL asked for each lease granted here

    // The watch: at most one; m_watchGeneration tells replies of an older one apart.
    bool m_watching = false;
    std::uint64_t m_watchGeneration = 0;
    RequestId m_watchRequest = 0;
    std::size_t m_watchEndpoint = 0;
    std::int64_t m_watchSeen = 0;
    std::int64_t m_maxRevision =
        0;  ///< highest revision seen in any reply or event  ///< highest revision applied; older events are dropped
    std::string m_watchBuffer;
    core::TimePoint m_watchOpenedAt{};
    core::TimePoint m_watchProgressAt{};  ///< last whole line
    core::TimePoint m_partialSince{};     ///< when the unfinished line in the buffer began
    int m_quickBreaks = 0;                ///< watches in a row that broke right after opening
    bool m_probing = false;
    std::function<void(const core::WatchEvent&)> m_onEvent;
    std::function<void(const std::string&)> m_onBroken;
    sd::Source m_watchTimer;
    sd::Source m_watchOpen;
    sd::Source m_watchDefer;
    std::vector<RequestId> m_toCancel;
    std::shared_ptr<bool> m_alive = std::make_shared<bool>(true);
};

/** Parses a KeyValue object of etcd's JSON (int64 as strings, omitted defaults). The leader
 *  key's value is the holder's replica id, or "ID>TARGET" while the holder hands over; both
 *  are sanitized (anyone with write access to the prefix can write the key). */
/** The leader key's value: "HOLDER[>SUCCESSOR][\nmode=fast]" (replica ids never contain '>' or a
 *  newline); written by campaign and markHandover, read by parseLeaderKv (and promctl). */
std::string encodeLeaderValue(const std::string& holder, const std::string& handoverTo, bool fast);
core::LeaderKey parseLeaderKv(const json::Value& kv);

}  // namespace prom::store

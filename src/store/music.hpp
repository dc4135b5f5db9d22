#pragma once
// The Store on MUSIC, wire-compatible with PROM 1.0.6 deployments (MUSIC REST v2): keyspace
// prom_APP, table Replicas (id, isactive, timeoflastupdate, lockref), the FIFO lock queue
// prom_APP.Replicas.PROM_ADMIN whose head is the active, heartbeat rows.
//
// Mapped onto the election's store model: the "lease" is this daemon's heartbeat session
// (keepAlive writes the heartbeat row; for the holder it also re-acquires the lock, and a
// lost lock is a lost lease); the "leader key" is the head of the lock queue, read by
// polling (MUSIC has no watch); the fencing token is the number in the holder's lock
// reference ($name$x-0000000012 -> 12, $ks.table.key$12 -> 12), which grows with every
// reference MUSIC creates, so a later holder always has a larger token. A peer is dead when
// its timeoflastupdate has not changed for the timeout on this daemon's monotonic clock (no
// synchronised clocks needed among prom replicas); a dead holder's reference is released and
// its row marked, as PROM does. PROM 1.0.6 peers compare timeoflastupdate with their wall
// clock, so the rows written here always carry the current wall time and never name a lock
// reference MUSIC no longer holds for us.
#include <map>

#include "common/json.hpp"
#include "store/http.hpp"
#include "store/store.hpp"

namespace prom::store {

struct MusicSettings {
    std::vector<std::string> locations;  ///< base URLs ending in /MUSIC/rest/vN
    std::string app;
    std::string self;
    std::vector<std::string> replicas;
    std::string aid;
    std::string ns;
    std::string user;
    std::string password;
    bool basicAuth = true;  ///< MUSIC 3.x Authorization: Basic; false: 2.5's userId/password headers
    std::chrono::milliseconds requestTimeout{1000};
    core::Duration peerTimeout{5000};
    core::Duration pollInterval{1000};
};

/** http://HOST:8080/MUSIC/rest/vN from a bare host, as PROM builds it; a URL is kept. */
std::string musicBaseUrl(const std::string& location, std::int64_t version);
/** The fencing token of a lock reference: its trailing number (0 if none). */
std::int64_t musicToken(const std::string& lockRef);
/** PROM's keyspace of an app: prom_APP. */
std::string musicKeyspace(const std::string& app);
/** PROM 1.0.6's lock, on the PROM_ADMIN row: prom_APP.Replicas.PROM_ADMIN (its queue's head is the active). */
std::string musicLockName(const std::string& app);
/** The headers of every call, as PROM sends them: Accept, aid and ns if set, the credentials. */
std::vector<std::string> musicHeaders(const MusicSettings& s);
/** A reply's JSON object, or why this location's answer is no answer (transport error, 5xx,
 *  not a JSON object): then the next location is asked, as PROM does. */
Result<json::Value> musicReplyBody(const HttpResponse& resp);
/** MUSIC's "status": "SUCCESS" in a reply. */
bool musicSuccess(const json::Value& reply);
/** A reply's explanation: its message, error or Exception field ("" if none). */
std::string musicMessage(const json::Value& reply);
/** A row's cell or a reply's field as text: a string, a number's digits, true/false; else "". */
std::string musicText(const json::Value* v);
/** The lock reference at the head of the queue in an enquire reply; "" when there is none
 *  (each MUSIC version says so its own way). */
std::string musicLockHolder(const json::Value& enquireReply);

class Music : public Store {
public:
    Music(sd::EventLoop& loop, Http& http, MusicSettings settings);
    ~Music() override;

    void grantLease(core::Duration ttl, std::function<void(Result<Lease>)> done) override;
    void keepAlive(std::int64_t lease, std::function<void(Result<std::optional<core::Duration>>)> done) override;
    void revokeLease(std::int64_t lease, std::function<void(Result<Ok>)> done) override;
    void readLeader(std::function<void(Result<core::LeaderRead>)> done) override;
    /** MUSIC has no fast keys: the key is a slow one whatever fast asks. */
    void campaign(std::int64_t lease, bool fast, std::function<void(Result<core::CampaignResult>)> done) override;
    void deleteLeader(std::int64_t createRevision, std::function<void(Result<Ok>)> done) override;
    void watchLeader(std::int64_t fromRevision, std::function<void(const core::WatchEvent&)> onEvent,
                     std::function<void(const std::string&)> onBroken) override;
    void cancelWatch() override;
    void markHandover(std::int64_t, std::int64_t, const std::string&, std::function<void(Result<Ok>)> done) override;
    /** PROM's Replicas rows are the members (heartbeats); they have no room for more. */
    void putMember(std::int64_t, const MemberInfo&, std::function<void(Result<Ok>)> done) override { done(Ok{}); }
    void readMembers(std::function<void(Result<std::vector<MemberInfo>>)> done) override;
    std::uint64_t requestCount() const override { return m_http.requestCount(); }

private:
    struct Reply {
        long status = 0;
        json::Value body;
        /** MUSIC's "status" is SUCCESS. */
        bool success() const;
        std::string message() const;
    };
    using ReplyDone = std::function<void(Result<Reply>)>;
    /** One REST call, trying the locations in order (PROM: always from the first). */
    void call(const std::string& method, const std::string& path, const std::string& body, ReplyDone done,
              std::size_t location = 0, std::string firstError = "");
    void bootstrap(std::function<void(Result<Ok>)> done);
    void ensureRef(std::function<void(Result<Ok>)> done);
    void writeRow(bool active, std::function<void(Result<Ok>)> done);
    void acquire(std::function<void(Result<bool>)> done);
    void release(const std::string& ref, const std::string& holderId, std::function<void(Result<Ok>)> done);
    void readRow(const std::string& query, std::function<void(Result<std::optional<json::Value>>)> done);
    void poll();
    void readHead(std::function<void(Result<core::LeaderRead>)> done);
    /** Notes a heartbeat value; true when it has not changed for the timeout. */
    bool deadAfterObserving(const std::string& id, std::int64_t heartbeat);
    core::LeaderKey selfKey() const;

    sd::EventLoop& m_loop;
    Http& m_http;
    MusicSettings m_s;
    std::string m_keyspace;
    std::string m_lockName;
    bool m_bootstrapped = false;
    std::string m_ref;  ///< our lock reference, "" = not in the queue
    bool m_holding = false;
    /** The heartbeat session is this replica's place in the queue, the same across restarts so
     *  that a restarted holder resumes (see readLeader). */
    static constexpr std::int64_t kSession = 1;
    bool m_firstRef = true;
    std::vector<std::function<void(Result<Ok>)>> m_refWaiters;
    std::int64_t m_revision = 0;
    struct Seen {
        std::int64_t value;
        core::TimePoint changedAt;
    };
    std::map<std::string, Seen> m_seen;  ///< heartbeat values by replica id (or unknown lock ref)
    std::function<void(const core::WatchEvent&)> m_onEvent;
    std::function<void(const std::string&)> m_onBroken;
    core::LeaderKey m_reported;
    bool m_reportedOnce = false;
    bool m_polling = false;
    sd::Source m_pollTimer;
    std::shared_ptr<bool> m_alive = std::make_shared<bool>(true);
};

}  // namespace prom::store

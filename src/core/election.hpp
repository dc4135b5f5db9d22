#pragma once
// The election state machine (DESIGN.md §2-3): events in, effects out. No I/O, no clock:
// every event carries `now` (CLOCK_MONOTONIC), so tests drive it with a fake clock.
// Every safety rule of prom lives in this file and election.cpp.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace prom::core {

using Duration = std::chrono::milliseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

enum class Role { Starting, Passive, Promoting, Active, Demoting, Stopping };
const char* toString(Role r);

enum class ActionKind { EnsureActive, EnsurePassive, RestartPeer };
const char* toString(ActionKind k);

/** PROM exit codes: 0 = already in the wanted mode, 2 = switched and healthy, else failure. */
enum class ActionOutcome { AlreadyInMode, Switched, Failed, TimedOut, Cancelled };

/** The leader key as read from the store. */
struct LeaderKey {
    bool exists = false;
    std::string holder;            ///< replica id written in the key
    std::int64_t lease = 0;        ///< lease the key is bound to
    std::int64_t createRevision = 0;  ///< the fencing token
    /** Set by an active handing over (Switchover): the replica that should campaign first. */
    std::string handoverTo;
    bool operator==(const LeaderKey&) const = default;
};

/** Static parameters of one replica's election. */
struct Params {
    std::string self;
    Duration requestedTtl{5000};   ///< timeout-ms rounded up to whole seconds
    Duration demoteMargin{1250};
    Duration monitorInterval{1000};
    Duration retryBackoff{1000};
    int retryAttempts = 3;
    bool startPassive = false;
    /** Delay before campaigning: kPriorityStep for each replica with a higher priority. */
    Duration campaignDelay{0};
    /** How long a replica that resigned stays out of campaigns so that another takes over. */
    Duration resignCooldown{5000};
    /** Retry interval for failed store requests. */
    Duration storeRetry{500};
    /** Peers with a restart-prom action: the active restarts one whose member key has been
     *  missing for requestedTtl, at most once per restartPeerBackoff. */
    std::vector<std::string> restartablePeers;
    Duration restartPeerBackoff{30000};
    /** How often the active reads the member keys (only when it has restartable peers). */
    Duration membersInterval{2500};
};

/** Per replica of higher priority, a lower-priority replica waits this long before campaigning. */
inline constexpr Duration kPriorityStep{300};

// ---- events -------------------------------------------------------------------------------
struct Start {
    std::int64_t persistedLease = 0;  ///< lease ID left by a previous run (0 = none)
};
struct LeaseGranted {
    std::int64_t lease;
    Duration ttl;
    TimePoint sentAt;
};
struct KeepaliveAcked {
    std::int64_t lease;
    Duration ttl;
    TimePoint sentAt;
};
/** etcd answered the keepalive without a TTL: the lease no longer exists. */
struct LeaseLost {
    std::int64_t lease;
};
/** A lease grant or keepalive did not get an answer (network, 5xx, timeout). */
struct LeaseRequestFailed {
    std::int64_t lease;
    std::string reason;
};
/** Result of ReadLeader, or of a campaign that lost: the key and the store revision. */
struct LeaderRead {
    LeaderKey key;
    std::int64_t revision;
};
struct CampaignResult {
    bool won;
    LeaderKey key;  ///< the holder after the txn (ours when won)
    std::int64_t revision;
};
/** A store request whose outcome is unknown even after re-reading. */
struct StoreRequestFailed {
    enum class What { Read, Campaign, Resign, Members, Handover } what;
    std::string reason;
};
struct WatchEvent {
    LeaderKey key;  ///< exists == false for a DELETE
    std::int64_t revision;
};
struct WatchBroken {
    std::string reason;
};
struct ActionFinished {
    ActionKind kind;
    ActionOutcome outcome;
    std::string detail;
};
struct ResignDone {};
/** Replica ids whose member key exists. */
struct MembersRead {
    std::vector<std::string> present;
};
struct Tick {};
struct ResignRequest {};
/** Switchover(target): resign so that target ("" = the best passive) takes over. */
struct SwitchoverRequest {
    std::string target;
};
/** The leader key now names the handover target. */
struct HandoverMarked {};
struct PauseRequest {
    bool pause;
};
struct StopRequest {};

using Event = std::variant<Start, LeaseGranted, KeepaliveAcked, LeaseLost, LeaseRequestFailed, LeaderRead, CampaignResult,
                           StoreRequestFailed, WatchEvent, WatchBroken, ActionFinished, ResignDone, MembersRead, Tick,
                           ResignRequest, SwitchoverRequest, HandoverMarked, PauseRequest, StopRequest>;

// ---- effects ------------------------------------------------------------------------------
struct GrantLease {
    Duration ttl;
};
struct KeepAlive {
    std::int64_t lease;
};
struct RevokeLease {
    std::int64_t lease;
};
struct PersistLease {
    std::int64_t lease;  ///< 0 = forget
};
struct ReadLeader {};
/** Create the leader key bound to lease if absent; report the holder either way. */
struct Campaign {
    std::int64_t lease;
};
/** (Re)open the watch of the leader key from this revision. */
struct Watch {
    std::int64_t fromRevision;
};
/** Delete the leader key if its create revision is still this one. */
struct DeleteLeader {
    std::int64_t createRevision;
};
struct RunAction {
    ActionKind kind;
    Role role;
    std::string leader;
    std::int64_t token;
    std::string peer;  ///< RestartPeer: the replica to restart
};
/** Put this replica's member key, bound to lease. */
struct PutMember {
    std::int64_t lease;
};
struct ReadMembers {};
/** Rewrite the leader key (guarded by its create revision, same lease) to name the target. */
struct MarkHandover {
    std::int64_t createRevision;
    std::int64_t lease;
    std::string target;
};
/** Kill the running action (its ActionFinished comes back as Cancelled). */
struct CancelAction {};
struct PublishRole {
    Role role;
    std::string leader;
    std::int64_t token;
    std::string reason;
};
struct PublishLeader {
    std::string leader;
    std::int64_t token;
};
struct PublishError {
    std::string message;
};
struct Exit {};

using Effect = std::variant<GrantLease, KeepAlive, RevokeLease, PersistLease, ReadLeader, Campaign, Watch, DeleteLeader,
                            RunAction, CancelAction, PublishRole, PublishLeader, PublishError, PutMember, ReadMembers, MarkHandover, Exit>;

/** Outcome of an operator request (D-Bus method). */
enum class RequestResult { Accepted, NotActive, InvalidArgs };

class Election {
public:
    explicit Election(Params p);

    /** Feeds one event at monotonic time now; returns what the daemon must do, in order. */
    std::vector<Effect> handle(TimePoint now, const Event& event);

    /** When the daemon must deliver the next Tick (nullopt: only on events). */
    std::optional<TimePoint> nextWakeup() const;

    Role role() const { return m_role; }
    const std::string& leader() const { return m_leader.holder; }
    /** Highest fencing token this replica has seen (never decreases). */
    std::int64_t token() const { return m_token; }
    bool paused() const { return m_paused; }
    bool holdsLeadership() const { return m_held != 0; }
    /** Local deadline of the active: last acknowledged keepalive send time + TTL - margin. */
    std::optional<TimePoint> deadline() const;
    /** Whether a ResignRequest would be accepted now. */
    RequestResult canResign() const;
    /** Whether a SwitchoverRequest to target would be accepted (replicas: every replica id). */
    RequestResult canSwitchover(const std::string& target, const std::vector<std::string>& replicas) const;

private:
    void onEvent(TimePoint now, const Event& e);
    void checkDeadline(TimePoint now);
    void loseLeadership(TimePoint now, const std::string& reason, bool abandonLease);
    void drive(TimePoint now);
    void setRole(Role r, const std::string& reason);
    void learnLeader(const LeaderKey& key);
    void startAction(ActionKind k, const std::string& peer = "");
    void onMembers(TimePoint now, const MembersRead& m);
    void queueAction(ActionKind k);
    void evaluateOwnership(TimePoint now);
    void onActionFinished(TimePoint now, const ActionFinished& f);
    void scheduleEnsure(TimePoint at) { m_nextEnsureAt = at; }
    void emit(Effect e) { m_out.push_back(std::move(e)); }

    Params m_p;
    Role m_role = Role::Starting;
    TimePoint m_now{};
    std::vector<Effect> m_out;

    // lease
    std::int64_t m_lease = 0;
    Duration m_ttl{0};
    TimePoint m_lastAckSent{};
    bool m_leaseRequestInFlight = false;
    std::optional<TimePoint> m_leaseRetryAt;
    TimePoint m_nextKeepalive{};
    std::int64_t m_resumeLease = 0;  ///< persisted lease being checked at start

    // leader key
    LeaderKey m_leader;
    bool m_leaderKnown = false;
    std::int64_t m_token = 0;
    std::int64_t m_held = 0;  ///< create revision of the leader key we hold, 0 = none
    bool m_watchOpen = false;
    std::int64_t m_revision = 0;
    bool m_readInFlight = false;
    bool m_readWanted = true;
    std::optional<TimePoint> m_readRetryAt;
    bool m_campaignInFlight = false;
    std::optional<TimePoint> m_campaignAt;
    bool m_seenOtherActive = false;
    std::optional<TimePoint> m_noCampaignUntil;

    // actions
    std::optional<ActionKind> m_running;
    std::optional<ActionKind> m_queued;
    std::optional<TimePoint> m_nextEnsureAt;
    int m_failures = 0;
    bool m_settled = false;  ///< first role decided
    std::optional<TimePoint> m_startDeadline;

    // resign / stop
    bool m_resignPending = false;  ///< delete the key once ensure-passive finished
    bool m_readyToDelete = false;
    std::string m_handoverTo;      ///< our switchover target, "" = none
    bool m_handoverMarked = false;
    bool m_markInFlight = false;
    bool m_handoverToMe = false;   ///< the last active named this replica
    int m_passiveFailures = 0;
    bool m_retryPassiveNow = false;
    bool m_exited = false;
    bool m_deleteInFlight = false;
    std::optional<TimePoint> m_deleteRetryAt;
    bool m_paused = false;
    bool m_stopping = false;
    bool m_started = false;

    // peers (restart-prom)
    bool m_membersInFlight = false;
    std::optional<TimePoint> m_membersAt;
    std::map<std::string, TimePoint> m_missingSince;
    std::map<std::string, TimePoint> m_nextRestart;
    std::deque<std::string> m_restartQueue;
};

}  // namespace prom::core

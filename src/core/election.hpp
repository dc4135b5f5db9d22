#pragma once
// The election state machine (DESIGN.md §2-3): events in, effects out. No I/O, no clock:
// every event carries `now` (the daemon's monotonic clock), so tests and the cluster
// simulation drive it with fake clocks. Every safety rule of prom lives here and in
// election.cpp; the states, events and transitions are drawn in doc/election.dot.
//
// The state is four small machines whose every combination is legal:
//
//   Lease       NoLease --GrantLease--> Granting --LeaseGranted--> LeaseHeld
//               Start(persisted) --> Resuming --KeepaliveAcked--> LeaseHeld
//               LeaseHeld --LeaseLost / deadline (abandon)--> NoLease
//   Leadership  NotLeader --Campaign--> Campaigning --won on the current lease--> Leading
//               Leading --Resign/Switchover/Stop/retries exhausted--> HandingOver
//                         (ensure-passive, then MarkHandover if a target, then DeleteLeader)
//               Leading/HandingOver --deadline, key deleted or replaced, LeaseLost--> NotLeader
//               HandingOver --ResignDone--> NotLeader (+ cooldown)
//   Actions     idle | running K | running K + queued K' (one at a time, in order)
//   Role        published: starting, passive, promoting, active, demoting, stopping
//
// Every request effect carries a RequestId; its reply event names it. A reply to a request that
// is no longer the current one of its kind is ignored and counted (staleReplies()).
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/clock.hpp"
#include "core/support.hpp"

namespace prom::core {

using Duration = prom::Duration;
using TimePoint = prom::TimePoint;
/** Names one request effect; its reply carries the same id. 0 = none. */
using RequestId = std::uint64_t;

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
    /** Fast mode: the holder had peer-majority round trips when it created the key, so the key
     *  may be taken over once a majority withdrew support from its epoch. A slow key (false) is
     *  only replaced after its lease expires. Written in the key's value (mode=fast|slow). */
    bool fast = false;
    bool operator==(const LeaderKey&) const = default;
};

/** Parameters of one replica's election. */
/** The active renews its lease every TTL/3: two renewals may fail before the lease is at risk.
 *  The store's timeouts and the config's margin check are fitted to this period. */
constexpr Duration keepalivePeriod(Duration ttl) { return ttl / 3; }

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

    // ---- fast mode (doc/election.md "Fast mode"); fixed for the life of the process ----
    bool fast = false;
    /** The other voting members (witnesses included): majority = (peers + 1) / 2 + 1. */
    std::vector<std::string> peers;
    /** Votes (supports, withdraws), never campaigns, runs no actions. */
    bool witness = false;
    Duration heartbeat{25};
    SupportTiming support{};
    /** The holder stops this long before its peer-support deadline (hard stop time). */
    Duration stopMargin{50};
};

/** Per replica of higher priority, a lower-priority replica waits this long before campaigning. */
inline constexpr Duration kPriorityStep{300};

// ---- events -------------------------------------------------------------------------------
struct Start {
    std::int64_t persistedLease = 0;  ///< lease ID left by a previous run (0 = none)
    /** The previous run's deadline, when it may have left the service active: the replica must
     *  be passive by then unless it proves that it still holds the leader key. */
    std::optional<TimePoint> persistedDeadline;
};
struct LeaseGranted {
    std::int64_t lease;
    Duration ttl;
    TimePoint sentAt;
    RequestId req = 0;
};
struct KeepaliveAcked {
    std::int64_t lease;
    Duration ttl;
    TimePoint sentAt;
    RequestId req = 0;
};
/** etcd answered the keepalive without a TTL: the lease no longer exists. */
struct LeaseLost {
    std::int64_t lease;
    RequestId req = 0;
};
/** A lease grant or keepalive did not get an answer (network, 5xx, timeout). */
struct LeaseRequestFailed {
    std::int64_t lease;
    std::string reason;
    RequestId req = 0;
};
/** Result of ReadLeader: the key and the store revision. */
struct LeaderRead {
    LeaderKey key;
    std::int64_t revision;
    RequestId req = 0;
};
struct CampaignResult {
    bool won;
    LeaderKey key;  ///< the holder after the txn (ours when won)
    std::int64_t revision;
    RequestId req = 0;
};
/** A store request whose outcome is unknown even after re-reading. */
struct StoreRequestFailed {
    enum class What { Read, Campaign, Resign, Members, Handover } what;
    std::string reason;
    RequestId req = 0;
};
struct WatchEvent {
    LeaderKey key;  ///< exists == false for a DELETE
    std::int64_t revision;
    RequestId req = 0;  ///< the Watch that delivered it
};
struct WatchBroken {
    std::string reason;
    RequestId req = 0;
};
struct ActionFinished {
    ActionKind kind;
    ActionOutcome outcome;
    std::string detail;
    RequestId req = 0;
};
struct ResignDone {
    RequestId req = 0;
};
/** Replica ids whose member key exists. */
struct MembersRead {
    std::vector<std::string> present;
    RequestId req = 0;
};
struct Tick {};
struct ResignRequest {};
/** Switchover(target): resign so that target ("" = the best passive) takes over. */
struct SwitchoverRequest {
    std::string target;
};
/** The leader key now names the handover target. */
struct HandoverMarked {
    RequestId req = 0;
};
/** Pause (maintenance): no campaigns (no takeover), no periodic ensure-active (no demotion on
 *  a failed check), no restarts; the lease rules still demote. cluster = the cluster-wide pause
 *  kept in the store (control/pause), which outlives every prom; else this replica's own. */
struct PauseRequest {
    bool pause;
    bool cluster = false;
};
struct StopRequest {};
/** Fast mode: a peer's heartbeat (authenticated by the transport). epoch = the fast key the
 *  sender holds (0 = none); withdrawn = the highest epoch the sender has withdrawn (0 = none),
 *  repeated in every heartbeat because datagrams get lost. */
struct PeerHeartbeat {
    std::string from;
    std::int64_t epoch = 0;
    std::uint64_t seq = 0;
    std::int64_t withdrawn = 0;
};
/** Fast mode: a peer's answer to heartbeat seq (the seq is the request id of the heartbeat). */
struct PeerAck {
    std::string from;
    std::int64_t epoch = 0;
    std::uint64_t seq = 0;
    bool supported = false;
};

using Event = std::variant<Start, LeaseGranted, KeepaliveAcked, LeaseLost, LeaseRequestFailed, LeaderRead, CampaignResult,
                           StoreRequestFailed, WatchEvent, WatchBroken, ActionFinished, ResignDone, MembersRead, Tick,
                           ResignRequest, SwitchoverRequest, HandoverMarked, PauseRequest, StopRequest, PeerHeartbeat, PeerAck>;

// ---- effects ------------------------------------------------------------------------------
struct GrantLease {
    Duration ttl;
    RequestId id = 0;
};
struct KeepAlive {
    std::int64_t lease;
    RequestId id = 0;
};
struct RevokeLease {
    std::int64_t lease;
};
/** Remember the lease (0 = forget) and, while the service may be active, the deadline by which
 *  a restarted prom must have made it passive. */
struct PersistLease {
    std::int64_t lease;
    std::optional<TimePoint> deadline;
};
struct ReadLeader {
    RequestId id = 0;
};
/** Create the leader key bound to lease if absent; report the holder either way. */
struct Campaign {
    std::int64_t lease;
    RequestId id = 0;
    bool fast = false;  ///< write the key as fast (mode=fast) rather than slow
};
/** (Re)open the watch of the leader key from this revision (replacing any open one). */
struct Watch {
    std::int64_t fromRevision;
    RequestId id = 0;
};
/** Delete the leader key if its create revision is still this one. */
struct DeleteLeader {
    std::int64_t createRevision;
    RequestId id = 0;
};
struct RunAction {
    ActionKind kind;
    Role role;
    std::string leader;
    std::int64_t token;
    std::string peer;  ///< RestartPeer: the replica to restart
    RequestId id = 0;
};
/** Put this replica's member key, bound to lease. */
struct PutMember {
    std::int64_t lease;
};
struct ReadMembers {
    RequestId id = 0;
};
/** Rewrite the leader key (guarded by its create revision, same lease) to name the target. */
struct MarkHandover {
    std::int64_t createRevision;
    std::int64_t lease;
    std::string target;
    RequestId id = 0;
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
/** Fast mode: send a heartbeat to every peer (fields as in PeerHeartbeat). */
struct SendHeartbeat {
    std::int64_t epoch;
    std::uint64_t seq;
    std::int64_t withdrawn;
};
/** Fast mode: answer peer's heartbeat seq. */
struct SendAck {
    std::string to;
    std::int64_t epoch;
    std::uint64_t seq;
    bool supported;
};

using Effect = std::variant<GrantLease, KeepAlive, RevokeLease, PersistLease, ReadLeader, Campaign, Watch, DeleteLeader,
                            RunAction, CancelAction, PublishRole, PublishLeader, PublishError, PutMember, ReadMembers, MarkHandover, Exit,
                            SendHeartbeat, SendAck>;

/** Outcome of an operator request (D-Bus method). */
/** Paused: the cluster is paused, so nobody would take over from an active that gives up. */
enum class RequestResult { Accepted, NotActive, InvalidArgs, Paused };

// ---- state --------------------------------------------------------------------------------
struct NoLease {};
struct Granting {
    RequestId req;
};
struct LeaseHeld {
    std::int64_t id;
    Duration ttl;
    TimePoint lastAckSent;
    TimePoint nextKeepalive;
    RequestId keepalive = 0;  ///< in flight, 0 = none
};
/** A lease left by the previous run, being renewed to learn whether it still lives. */
struct Resuming {
    std::int64_t id;
    RequestId req;
};
using LeaseState = std::variant<NoLease, Granting, LeaseHeld, Resuming>;

struct NotLeader {};
struct Campaigning {
    std::int64_t lease;
    RequestId req;
};
struct Leading {
    std::int64_t token;  ///< create revision of our leader key
    std::int64_t lease;
};
/** Giving the role up on purpose: ensure-passive first, then (optionally) name the successor in
 *  the key, then delete the key. */
struct HandingOver {
    enum class Step { Demote, Mark, Delete } step;
    std::int64_t token;
    std::int64_t lease;
    std::string target;     ///< switchover target, "" = none
    RequestId req = 0;      ///< MarkHandover or DeleteLeader in flight
    std::optional<TimePoint> retryAt;
};
using Leadership = std::variant<NotLeader, Campaigning, Leading, HandingOver>;

class Election {
public:
    explicit Election(Params p);

    /** Feeds one event at monotonic time now; returns what the daemon must do, in order. */
    std::vector<Effect> handle(TimePoint now, const Event& event);

    /** When the daemon must deliver the next Tick (nullopt: only on events). */
    std::optional<TimePoint> nextWakeup() const;

    /** Applies what a reload may change (actions' retries and backoff, monitor interval,
     *  priorities, restart-prom peers); the lease parameters and the id stay as they are. */
    void reconfigure(const Params& p);

    Role role() const { return m_role; }
    const std::string& leader() const { return m_leader.holder; }
    /** Highest fencing token this replica has seen (never decreases). */
    std::int64_t token() const { return m_token; }
    /** Paused by itself or by the cluster. */
    bool paused() const { return m_paused || m_clusterPaused; }
    bool clusterPaused() const { return m_clusterPaused; }
    bool holdsLeadership() const { return heldToken().has_value(); }
    /** Whether a switchover or resign request addressed to the active holding token (promctl
     *  -c, through the store) is this replica's to carry out: only while it holds exactly that
     *  leadership, so a request that arrives after the role moved is not obeyed by the next. */
    bool isAddressedAs(std::int64_t token) const { return token > 0 && heldToken() == token; }
    /** Local deadline of the leader: last acknowledged keepalive send time + TTL - margin; for
     *  a fast key also no later than its peer-majority support deadline - stop margin. */
    std::optional<TimePoint> deadline() const;
    /** The deadline the PID 1 fence is armed for: deadline(), except that a fast key's (which
     *  moves with every acknowledged heartbeat) is rounded down to support/4, so the fence file
     *  is rewritten a few times a second, not on every ack; an earlier deadline only makes the
     *  fence stop the replica earlier when prom has died. */
    std::optional<TimePoint> fenceDeadline() const;
    /** Replies ignored because they answered a request that was no longer current. */
    std::uint64_t staleReplies() const { return m_staleReplies; }
    bool fastMode() const { return m_p.fast; }
    /** Peers whose support of this replica's fast epoch has not run out (0 when not holding one). */
    unsigned peerSupport() const;
    /** Whether this replica holds a fast key (takeovers by peer withdrawal apply to it). */
    bool holdsFastKey() const;
    /** Whether a ResignRequest would be accepted now. */
    RequestResult canResign() const;
    /** Whether a SwitchoverRequest to target would be accepted (replicas: every replica id). */
    RequestResult canSwitchover(const std::string& target, const std::vector<std::string>& replicas) const;

private:
    // one handler per event
    void on(const Start& e);
    void on(const LeaseGranted& e);
    void on(const KeepaliveAcked& e);
    void on(const LeaseLost& e);
    void on(const LeaseRequestFailed& e);
    void on(const LeaderRead& e);
    void on(const CampaignResult& e);
    void on(const StoreRequestFailed& e);
    void on(const WatchEvent& e);
    void on(const WatchBroken& e);
    void on(const ActionFinished& e);
    void on(const ResignDone& e);
    void on(const MembersRead& e);
    void on(const Tick&) {}
    void on(const ResignRequest&);
    void on(const SwitchoverRequest& e);
    void on(const HandoverMarked& e);
    void on(const PauseRequest& e);
    void on(const StopRequest&);
    void on(const PeerHeartbeat& e);
    void on(const PeerAck& e);

    // transitions and helpers
    void checkDeadlines();
    void loseLeadership(const std::string& reason, bool abandonLease);
    void handOver(const std::string& target, Role role, const std::string& reason);
    void evaluateOwnership();
    void settlePassive();
    void drive();
    void driveLease();
    void driveLeaderKey();
    void driveActions();
    void driveFast();
    void expireSupport();
    void enterLeading(std::int64_t token, std::int64_t lease, bool fastKey);
    bool isPeer(const std::string& id) const;
    /** Fast key held and a majority's support not run out (ensure-active may run). */
    bool supportHolds() const;
    std::optional<TimePoint> supportDeadline() const;
    bool peersReachable() const;
    bool peersSettled() const;
    void setRole(Role r, const std::string& reason);
    void learnLeader(const LeaderKey& key);
    void queueAction(ActionKind k);
    void startAction(ActionKind k, const std::string& peer = "");
    void persist();
    bool stale(RequestId got, RequestId current);
    RequestId next() { return ++m_lastRequest; }
    std::int64_t currentLease() const;
    std::optional<std::int64_t> heldToken() const;
    void emit(Effect e) { m_out.push_back(std::move(e)); }

    Params m_p;
    Role m_role = Role::Starting;
    TimePoint m_now{};
    std::vector<Effect> m_out;
    RequestId m_lastRequest = 0;
    std::uint64_t m_staleReplies = 0;
    bool m_started = false;
    bool m_exited = false;
    bool m_stopping = false;
    bool m_paused = false;         ///< this replica's own pause (D-Bus Pause)
    bool m_clusterPaused = false;  ///< the store's control/pause

    // lease
    LeaseState m_lease = NoLease{};
    std::optional<TimePoint> m_leaseRetryAt;
    /** Set while the service may be active: persisted so a restarted prom honours it. */
    std::optional<TimePoint> m_serviceDeadline;
    /** A lease given up at the deadline: revoked once ensure-passive has finished. */
    std::int64_t m_abandoned = 0;

    // leader key
    Leadership m_leadership = NotLeader{};
    LeaderKey m_leader;
    bool m_leaderKnown = false;
    std::int64_t m_token = 0;
    std::int64_t m_revision = 0;
    RequestId m_read = 0;   ///< ReadLeader in flight
    bool m_readWanted = true;
    std::optional<TimePoint> m_readRetryAt;
    RequestId m_watch = 0;  ///< open watch, 0 = none
    std::optional<TimePoint> m_campaignAt;
    std::optional<TimePoint> m_noCampaignUntil;  ///< this replica resigned: others go first
    std::optional<TimePoint> m_deferUntil;       ///< a switchover named another: it goes first
    bool m_seenOtherActive = false;
    bool m_handoverToMe = false;  ///< the last active named this replica
    std::optional<std::int64_t> m_resignedToken;  ///< highest token this replica gave up by deleting its key

    // actions
    struct Running {
        ActionKind kind;
        RequestId req;
    };
    std::optional<Running> m_running;
    std::optional<ActionKind> m_queued;
    std::optional<TimePoint> m_nextEnsureAt;
    bool m_retryPassive = false;  ///< a failed ensure-passive is retried before anything else
    int m_failures = 0;
    int m_passiveFailures = 0;
    bool m_settled = false;  ///< first role decided
    std::optional<TimePoint> m_startDeadline;

    // peers (restart-prom)
    RequestId m_members = 0;
    std::optional<TimePoint> m_membersAt;
    std::map<std::string, TimePoint> m_missingSince;
    std::map<std::string, TimePoint> m_nextRestart;
    std::deque<std::string> m_restartQueue;

    // fast mode
    Supporter m_supporter;
    HolderSupport m_holder;
    bool m_heldFast = false;              ///< the key held (Leading/HandingOver) is fast
    TimePoint m_supportGrace{};           ///< a fresh fast key without majority acks is given up then
    std::uint64_t m_heartbeatSeq = 0;
    std::optional<TimePoint> m_nextHeartbeat;
    bool m_heartbeatNow = false;          ///< a new withdrawal or epoch: tell the peers at once
    std::map<std::string, TimePoint> m_lastAck;                 ///< round trips per peer
    std::map<std::int64_t, std::map<std::string, bool>> m_withdrawals;  ///< epoch -> peers withdrawn
    struct Takeover {
        std::int64_t epoch;
        RequestId req;
    };
    std::optional<Takeover> m_takeover;   ///< guarded delete of a withdrawn fast key in flight
    TimePoint m_startedAt{};
};

}  // namespace prom::core

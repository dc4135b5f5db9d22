#pragma once
// Peer support for fast mode (doc/election.md "Fast mode", design b' of the fast-failover note):
// the two pure halves of the rule "the active holds the role only while a majority promised, on
// their own clocks, not to back anyone else". No I/O, no clock: every call carries `now`.
//
// Epochs are the create revisions of fast leader keys (the fencing tokens): a holder's epoch
// exists in one incarnation of one replica only, because a holder that loses its support never
// leads that key again and a restarted prom never resumes a fast key.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"

namespace prom::core {

struct SupportTiming {
    Duration support{200};  ///< S: how long one heartbeat buys support, on the supporter's clock
    double drift = 1e-3;    ///< rho: bound on any clock's rate error (NTP slews at most 500 ppm)
};

/** The supporter side: which (holder, epoch) this replica currently supports, and which it has
 *  withdrawn for good.
 *  - A heartbeat of epoch e from holder i, received at now, supports (i, e) until now + S.
 *  - Once now reaches that, (i, e) is withdrawn: never supported again by this incarnation.
 *  - A restarted prom has forgotten both its promises and its withdrawals. It supports and
 *    withdraws nothing for S·(1+rho) after its start (its old promises have run out in real time
 *    by then), and it never supports an epoch at or below the store revision it read first: such
 *    an epoch may be one its previous incarnation withdrew. */
class Supporter {
public:
    explicit Supporter(SupportTiming t) : m_t(t) {}

    /** The process started at now: nothing before now + S·(1+rho). */
    void start(TimePoint now);
    /** The first store revision read after the start: epochs at or below it are never supported. */
    void setFloor(std::int64_t revision);
    bool floorKnown() const { return m_floor.has_value(); }
    bool quiet(TimePoint now) const { return now < m_quietUntil; }

    /** A heartbeat of epoch from holder: whether this replica supports it (the ack says so). */
    bool onHeartbeat(TimePoint now, const std::string& holder, std::int64_t epoch);
    /** The store names holder with a fast key of this epoch: it gets S (from now) to heartbeat
     *  before this replica withdraws, as if it had just sent one. */
    void onKey(TimePoint now, const std::string& holder, std::int64_t epoch);
    /** Epochs whose support ran out at now: withdrawn from now on (returned once). */
    std::vector<std::int64_t> expire(TimePoint now);
    bool withdrawn(std::int64_t epoch) const;
    /** Highest epoch withdrawn, 0 = none (every heartbeat repeats it: withdrawals may be lost). */
    std::int64_t latestWithdrawn() const { return m_latestWithdrawn; }
    /** Forget epochs below this one: a newer key exists, so they can never lead again. */
    void forgetBelow(std::int64_t epoch);
    /** When expire() next has something to do. */
    std::optional<TimePoint> nextExpiry() const;

private:
    struct Entry {
        std::string holder;
        TimePoint until;
        bool withdrawn = false;
    };
    SupportTiming m_t;
    TimePoint m_quietUntil{};
    std::optional<std::int64_t> m_floor;
    std::map<std::int64_t, Entry> m_epochs;
    std::int64_t m_latestWithdrawn = 0;
    std::int64_t m_forgotten = 0;
};

/** The holder side: when the support of a majority runs out for the holder's epoch.
 *  Support from peer j counts until send(latest acknowledged heartbeat to j) + S·(1-rho)/(1+rho):
 *  the supporter started its S on receipt (later than the send) on a clock that runs at most
 *  rho fast, the holder measures on a clock that runs at most rho slow. The deadline is the q-th
 *  latest of these, counting the holder itself (always supporting). */
class HolderSupport {
public:
    HolderSupport(SupportTiming t, int members) : m_t(t), m_members(members) {}

    /** Majority of the voting members (the holder included). */
    int quorum() const { return m_members / 2 + 1; }
    /** Starts counting for a new epoch (forgets every ack of an earlier one). */
    void begin(std::int64_t epoch);
    std::int64_t epoch() const { return m_epoch; }
    /** A heartbeat with this sequence number was sent at now (to every peer). */
    void sent(TimePoint now, std::uint64_t seq);
    /** peer acknowledged heartbeat seq of epoch, supporting it or not. */
    void acked(const std::string& peer, std::int64_t epoch, std::uint64_t seq, bool supported);
    /** The deadline of majority support; nullopt before a majority has acknowledged. */
    std::optional<TimePoint> deadline() const;
    /** Peers whose support of this epoch has not run out at now. */
    unsigned supporters(TimePoint now) const;
    /** Forget send times that can no longer extend anything. */
    void prune(TimePoint now);
    /** S·(1-rho)/(1+rho), rounded down to whole milliseconds. */
    Duration counted() const;

private:
    SupportTiming m_t;
    int m_members;
    std::int64_t m_epoch = 0;
    std::map<std::uint64_t, TimePoint> m_sent;
    std::map<std::string, TimePoint> m_until;
};

}  // namespace prom::core

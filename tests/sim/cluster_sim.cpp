#include "sim/cluster_sim.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <sstream>

#include "core/election.hpp"

namespace prom::sim {
namespace {

using core::Duration;
using core::TimePoint;
using Ms = std::int64_t;  // simulated real time, milliseconds

/** splitmix64: the same numbers on every platform (std:: distributions are not portable). */
class Rng {
public:
    explicit Rng(std::uint64_t seed) : m_s(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (m_s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    std::uint64_t below(std::uint64_t n) { return n ? next() % n : 0; }
    Ms between(Ms lo, Ms hi) { return hi <= lo ? lo : lo + static_cast<Ms>(below(static_cast<std::uint64_t>(hi - lo + 1))); }
    double unit() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }
    bool chance(double p) { return unit() < p; }

private:
    std::uint64_t m_s;
};

enum class FaultKind {
    Partition,        ///< replica <-> store, both directions
    RequestsCut,      ///< one-way: replica -> store dropped
    RepliesCut,       ///< one-way: store -> replica dropped (watch stalls too)
    LossyLink,        ///< loss, duplication and long, reordering delays on one replica's link
    NodeCrash,        ///< prom, actions and the service die, the link goes silent; reboot later
    PromCrash,        ///< prom killed with its actions (service keeps running); restarted
    PromCrashNoLease, ///< as PromCrash, and the persisted lease file is lost
    GracefulRestart,  ///< StopRequest, then restarted
    Freeze,           ///< SIGSTOP shorter than the margin
    StoreDown,        ///< store quorum loss / leader change: requests fail, leases reset after
    WatchCancel,      ///< the store cancels one replica's watch
    Switchover,
    Resign,
    Pause,
    // fast mode only (appended: lease-mode seeds draw from the kinds above and stay the same)
    PeerPartition,    ///< replica <-> every peer, both directions (the store link stays)
    PeerOneWay,       ///< replica -> peers or peers -> replica dropped
    PeerLossy,        ///< loss, duplication and long delays on one replica's peer messages
};

const char* name(FaultKind k) {
    switch (k) {
        case FaultKind::Partition: return "partition";
        case FaultKind::RequestsCut: return "requests-cut";
        case FaultKind::RepliesCut: return "replies-cut";
        case FaultKind::LossyLink: return "lossy-link";
        case FaultKind::NodeCrash: return "node-crash";
        case FaultKind::PromCrash: return "prom-crash";
        case FaultKind::PromCrashNoLease: return "prom-crash-lease-file-lost";
        case FaultKind::GracefulRestart: return "graceful-restart";
        case FaultKind::Freeze: return "freeze";
        case FaultKind::StoreDown: return "store-down";
        case FaultKind::WatchCancel: return "watch-cancel";
        case FaultKind::Switchover: return "switchover";
        case FaultKind::Resign: return "resign";
        case FaultKind::Pause: return "pause";
        case FaultKind::PeerPartition: return "peer-partition";
        case FaultKind::PeerOneWay: return "peer-one-way";
        case FaultKind::PeerLossy: return "peer-lossy";
    }
    return "?";
}

struct Fault {
    Ms at;
    FaultKind kind;
    int replica;
    Ms duration;
    int target;  ///< Switchover: -1 = best passive
};

// ---- the etcd model -------------------------------------------------------------------------
// What prom relies on (DESIGN.md §2, etcd-gateway notes): leases with whole-second TTLs that
// expire at the first 500 ms scan after their deadline (a keepalive after the deadline already
// finds the lease gone), txn create-if-absent bound to a lease, guarded delete and rewrite,
// a revision per write, watch history from a revision in order, leases reset to their full TTL
// by a new store leader, and timed-out writes that may commit later.
struct StoredLeader {
    std::string holder;
    std::int64_t lease;
    std::int64_t createRevision;
    std::string handoverTo;
    bool fast = false;
};

struct StoreModel {
    struct LeaseRec {
        Ms ttl;
        Ms expiresAt;
    };
    std::int64_t revision = 1;
    std::int64_t nextLease = 7000;
    std::map<std::int64_t, LeaseRec> leases;
    std::optional<StoredLeader> leader;
    std::map<std::string, std::int64_t> members;
    std::vector<std::pair<std::int64_t, core::LeaderKey>> history;  ///< revision, key after
    bool available = true;

    core::LeaderKey key() const {
        core::LeaderKey k;
        if (!leader) return k;
        k.exists = true;
        k.holder = leader->holder;
        k.lease = leader->lease;
        k.createRevision = leader->createRevision;
        k.handoverTo = leader->handoverTo;
        k.fast = leader->fast;
        return k;
    }
    bool alive(std::int64_t lease, Ms now) const {
        auto it = leases.find(lease);
        return it != leases.end() && now < it->second.expiresAt;
    }
    void record() { history.emplace_back(revision, key()); }
    void dropLease(std::int64_t lease) {
        leases.erase(lease);
        for (auto it = members.begin(); it != members.end();) it = it->second == lease ? members.erase(it) : std::next(it);
        if (leader && leader->lease == lease) {
            leader.reset();
            ++revision;
            record();
        }
    }
    void scan(Ms now) {
        std::vector<std::int64_t> expired;
        for (const auto& [id, l] : leases)
            if (now >= l.expiresAt) expired.push_back(id);
        for (auto id : expired) dropLease(id);
    }
    void resetLeases(Ms now) {
        for (auto& [id, l] : leases) l.expiresAt = std::max(l.expiresAt, now + l.ttl);
    }
};

struct Replica {
    int index = 0;
    std::string id;
    int priority = 0;
    double rate = 1.0;  ///< local clock rate against real time
    Ms offset = 0;      ///< local clock at real time 0
    std::unique_ptr<core::Election> core;
    bool up = false;
    bool stopping = false;  ///< graceful restart in progress
    Ms restartAfterExit = 0;
    Ms frozenUntil = 0;
    std::vector<core::Event> buffered;  ///< delivered while frozen
    std::int64_t persistedLease = 0;
    std::optional<TimePoint> persistedDeadline;
    std::uint64_t incarnation = 0;
    std::uint64_t wakeGen = 0;
    // link
    bool reqCut = false;
    bool respCut = false;
    double loss = 0;
    double dup = 0;
    Ms maxDelay = 5;
    // peer link (fast mode): applies to messages from and to this replica
    double peerLoss = 0;
    double peerDup = 0;
    Ms peerMaxDelay = 2;
    bool witness = false;
    // watch
    std::uint64_t watchGen = 0;
    core::RequestId watchId = 0;
    bool watchStalled = false;
    Ms watchLastDelivery = 0;
    // action
    bool actionRunning = false;
    core::ActionKind actionKind{};
    core::RequestId actionId = 0;
    std::uint64_t actionGen = 0;
    // checker
    bool serviceActive = false;
    std::int64_t serviceToken = 0;
};

struct Scheduled {
    Ms at;
    std::uint64_t seq;
    std::function<void()> fn;
};
struct Later {
    bool operator()(const Scheduled& a, const Scheduled& b) const { return a.at != b.at ? a.at > b.at : a.seq > b.seq; }
};

std::string describe(const core::Event& e) {
    static const char* names[] = {"Start", "LeaseGranted", "KeepaliveAcked", "LeaseLost", "LeaseRequestFailed", "LeaderRead",
                                  "CampaignResult", "StoreRequestFailed", "WatchEvent", "WatchBroken", "ActionFinished",
                                  "ResignDone", "MembersRead", "Tick", "ResignRequest", "SwitchoverRequest", "HandoverMarked",
                                  "PauseRequest", "StopRequest", "PeerHeartbeat", "PeerAck"};
    std::ostringstream s;
    s << names[e.index()];
    auto key = [&](const core::LeaderKey& k) {
        if (!k.exists) return std::string("none");
        return k.holder + "@" + std::to_string(k.createRevision) + "/lease " + std::to_string(k.lease) +
               (k.handoverTo.empty() ? "" : " handover " + k.handoverTo);
    };
    if (auto* g = std::get_if<core::LeaseGranted>(&e)) s << " lease " << g->lease;
    if (auto* a = std::get_if<core::KeepaliveAcked>(&e)) s << " lease " << a->lease << " sent " << a->sentAt.time_since_epoch().count();
    if (auto* l = std::get_if<core::LeaseLost>(&e)) s << " lease " << l->lease;
    if (auto* r = std::get_if<core::LeaderRead>(&e)) s << " " << key(r->key) << " rev " << r->revision;
    if (auto* c = std::get_if<core::CampaignResult>(&e)) s << (c->won ? " won " : " lost ") << key(c->key);
    if (auto* w = std::get_if<core::WatchEvent>(&e)) s << " " << key(w->key) << " rev " << w->revision;
    if (auto* f = std::get_if<core::StoreRequestFailed>(&e)) s << " what " << static_cast<int>(f->what);
    if (auto* a = std::get_if<core::ActionFinished>(&e)) s << " " << core::toString(a->kind) << " outcome " << static_cast<int>(a->outcome);
    if (auto* sw = std::get_if<core::SwitchoverRequest>(&e)) s << " to '" << sw->target << "'";
    if (auto* p = std::get_if<core::PauseRequest>(&e)) s << (p->pause ? " pause" : " resume") << (p->cluster ? " cluster" : "");
    if (auto* h = std::get_if<core::PeerHeartbeat>(&e))
        s << " from " << h->from << " epoch " << h->epoch << " seq " << h->seq << " withdrawn " << h->withdrawn;
    if (auto* a = std::get_if<core::PeerAck>(&e))
        s << " from " << a->from << " epoch " << a->epoch << " seq " << a->seq << (a->supported ? " supported" : " refused");
    return s.str();
}

std::string describe(const core::Effect& e) {
    static const char* names[] = {"GrantLease", "KeepAlive", "RevokeLease", "PersistLease", "ReadLeader", "Campaign",
                                  "Watch", "DeleteLeader", "RunAction", "CancelAction", "PublishRole", "PublishLeader",
                                  "PublishError", "PutMember", "ReadMembers", "MarkHandover", "Exit",
                                  "SendHeartbeat", "SendAck"};
    std::ostringstream s;
    s << names[e.index()];
    if (auto* k = std::get_if<core::KeepAlive>(&e)) s << " lease " << k->lease;
    if (auto* c = std::get_if<core::Campaign>(&e)) s << " lease " << c->lease;
    if (auto* w = std::get_if<core::Watch>(&e)) s << " from " << w->fromRevision;
    if (auto* d = std::get_if<core::DeleteLeader>(&e)) s << " rev " << d->createRevision;
    if (auto* r = std::get_if<core::RunAction>(&e)) s << " " << core::toString(r->kind) << " token " << r->token;
    if (auto* p = std::get_if<core::PublishRole>(&e)) s << " " << core::toString(p->role) << " token " << p->token << ": " << p->reason;
    if (auto* p = std::get_if<core::PublishError>(&e)) s << " " << p->message;
    if (auto* m = std::get_if<core::MarkHandover>(&e)) s << " to " << m->target;
    if (auto* c = std::get_if<core::Campaign>(&e)) s << (c->fast ? " fast" : " slow");
    if (auto* h = std::get_if<core::SendHeartbeat>(&e)) s << " epoch " << h->epoch << " seq " << h->seq << " withdrawn " << h->withdrawn;
    if (auto* a = std::get_if<core::SendAck>(&e))
        s << " to " << a->to << " epoch " << a->epoch << " seq " << a->seq << (a->supported ? " supported" : " refused");
    return s.str();
}

/** Names the request a reply answers (every reply event has a req field). */
void setReq(core::Event& e, core::RequestId id) {
    std::visit(
        [id](auto& ev) {
            if constexpr (requires { ev.req; }) ev.req = id;
        },
        e);
}

class Cluster {
public:
    explicit Cluster(const Options& o)
        : m_opt(o), m_faultRng(o.seed * 3 + 1), m_netRng(o.seed * 5 + 2), m_actRng(o.seed * 7 + 3) {
        Rng setup(o.seed);
        int n = o.replicas > 0 ? o.replicas : (setup.chance(0.7) ? 3 : 5);
        static const Ms ttls[] = {2000, 3000, 5000};
        m_ttl = ttls[setup.below(3)];
        m_margin = setup.between(500, std::min<Ms>(1250, m_ttl / 2));
        m_maxPassive = std::min<Ms>(300, m_margin / 3);
        m_requestTimeout = std::clamp<Ms>(m_ttl / 3, 500, 2000);
        m_watchSilence = m_ttl / 3 + m_requestTimeout;
        m_actionTimeout = 1500;
        m_restartablePeers = setup.chance(0.3);
        if (o.fast) {
            // Tuned fast-mode timing (fast-failover note §3): h 25 ms, S 200 ms; the stop margin
            // covers the hard stop (ensure-passive here) plus the longest freeze generated.
            m_heartbeat = 25;
            m_support = 200;
            m_stopMargin = 60;
            m_maxPassive = 25;
        }
        const bool withWitness = o.fast && n == 3 && setup.chance(0.3);
        for (int i = 0; i < n; ++i) {
            Replica r;
            r.index = i;
            r.id = std::to_string(i);
            r.priority = setup.chance(0.3) ? static_cast<int>(setup.below(3)) : 0;
            r.rate = 1.0 + (setup.unit() - 0.5) * 1e-3;  // ±500 ppm
            r.offset = setup.between(1000, 10'000'000);
            r.witness = withWitness && i == n - 1;
            m_replicas.push_back(std::move(r));
        }
        generateFaults();
    }

    Outcome run() {
        for (auto& r : m_replicas) {
            Ms at = m_faultRng.between(0, 300);
            schedule(at, [this, &r] { boot(r); });
        }
        scheduleScan(500);
        for (std::size_t i = 0; i < m_faults.size(); ++i) {
            if (m_opt.skipFaults.count(i)) continue;
            const Fault f = m_faults[i];
            schedule(f.at, [this, f] { inject(f); });
        }
        schedule(m_healAt, [this] { heal(); });
        while (!m_queue.empty() && m_out.ok) {
            Scheduled s = m_queue.top();
            m_queue.pop();
            if (s.at > m_endAt) break;
            m_now = s.at;
            s.fn();
        }
        if (m_out.ok) checkSettled();
        for (const auto& r : m_replicas)
            if (r.core) m_out.staleReplies += r.core->staleReplies();
        m_out.faults = m_faults.size();
        std::ostringstream sched;
        sched << "replicas " << m_replicas.size() << ", TTL " << m_ttl << " ms, margin " << m_margin << " ms";
        if (m_opt.fast)
            sched << ", fast mode: heartbeat " << m_heartbeat << " ms, support " << m_support << " ms, stop margin " << m_stopMargin
                  << " ms" << (m_replicas.back().witness ? ", replica " + m_replicas.back().id + " a witness" : "");
        sched << "\n";
        for (std::size_t i = 0; i < m_faults.size(); ++i) {
            const auto& f = m_faults[i];
            sched << (m_opt.skipFaults.count(i) ? "  (skipped) " : "  ") << "#" << i << " at " << f.at << " ms: " << name(f.kind)
                  << " replica " << f.replica << " for " << f.duration << " ms";
            if (f.kind == FaultKind::Switchover) sched << " to " << f.target;
            sched << "\n";
        }
        m_out.schedule = sched.str();
        return m_out;
    }

private:
    // ---- schedule ------------------------------------------------------------------------
    void generateFaults() {
        const Ms faultsEnd = 30'000;
        int count = static_cast<int>(m_faultRng.below(13));
        const int n = static_cast<int>(m_replicas.size());
        for (int i = 0; i < count; ++i) {
            Fault f{};
            f.at = m_faultRng.between(1500, faultsEnd);
            f.replica = static_cast<int>(m_faultRng.below(static_cast<std::uint64_t>(n)));
            const auto last = m_opt.fast ? FaultKind::PeerLossy : FaultKind::Pause;
            f.kind = static_cast<FaultKind>(m_faultRng.below(static_cast<std::uint64_t>(last) + 1));
            f.target = -1;
            switch (f.kind) {
                case FaultKind::Freeze:
                    // Shorter than the margin left after the hard stop (freezes longer than that
                    // are outside what prom alone can cover: prom(8), FAST MODE).
                    f.duration = m_opt.fast ? m_faultRng.between(5, m_stopMargin - m_maxPassive - 5)
                                            : m_faultRng.between(10, std::max<Ms>(20, m_margin - m_maxPassive - 100));
                    break;
                case FaultKind::PromCrash:
                case FaultKind::PromCrashNoLease:
                case FaultKind::GracefulRestart: f.duration = m_faultRng.between(100, 1000); break;  // RestartSec and start-up
                case FaultKind::NodeCrash: f.duration = m_faultRng.between(500, 6000); break;
                case FaultKind::StoreDown: f.duration = m_faultRng.between(100, 4000); break;
                case FaultKind::WatchCancel: f.duration = 0; break;
                case FaultKind::Switchover:
                    f.duration = 0;
                    f.target = m_faultRng.chance(0.3) ? -1 : static_cast<int>(m_faultRng.below(static_cast<std::uint64_t>(n)));
                    break;
                case FaultKind::Resign: f.duration = 0; break;
                default: f.duration = m_faultRng.between(200, 8000); break;
            }
            m_faults.push_back(f);
        }
        std::sort(m_faults.begin(), m_faults.end(), [](const Fault& a, const Fault& b) { return a.at < b.at; });
        m_healAt = faultsEnd + 8'000;
        m_endAt = m_healAt + 3 * m_ttl + 6'000;
    }

    void schedule(Ms at, std::function<void()> fn) { m_queue.push(Scheduled{at, ++m_seq, std::move(fn)}); }
    void scheduleScan(Ms at) {
        schedule(at, [this] {
            if (m_store.available) m_store.scan(m_now);
            notifyWatchers();
            scheduleScan(m_now + 500);
        });
    }

    void fail(const std::string& what) {
        if (!m_out.ok) return;
        m_out.ok = false;
        m_out.failure = "at " + std::to_string(m_now) + " ms: " + what;
        trace("VIOLATION " + what);
    }
    void trace(const std::string& line) {
        if (m_opt.trace) m_out.trace.push_back("[" + std::to_string(m_now) + "] " + line);
    }

    // ---- clocks --------------------------------------------------------------------------
    TimePoint local(const Replica& r) const {
        return TimePoint(Duration(r.offset + static_cast<Ms>(std::floor(static_cast<double>(m_now) * r.rate))));
    }
    Ms toReal(const Replica& r, TimePoint t) const {
        double real = static_cast<double>(t.time_since_epoch().count() - r.offset) / r.rate;
        return std::max<Ms>(m_now, static_cast<Ms>(std::ceil(real)));
    }

    // ---- processes -----------------------------------------------------------------------
    core::Params params(const Replica& r) const {
        core::Params p;
        p.self = r.id;
        p.requestedTtl = Duration(m_ttl);
        p.demoteMargin = Duration(m_margin);
        p.monitorInterval = Duration(1000);
        p.retryBackoff = Duration(1000);
        p.retryAttempts = 3;
        int higher = 0;
        for (const auto& o : m_replicas)
            if (o.priority > r.priority) ++higher;
        p.campaignDelay = core::kPriorityStep * higher;
        p.resignCooldown = Duration(m_ttl);
        p.storeRetry = std::min<Duration>(Duration(500), p.requestedTtl / 6);
        if (m_restartablePeers)
            for (const auto& o : m_replicas)
                if (o.id != r.id) p.restartablePeers.push_back(o.id);
        p.restartPeerBackoff = Duration(std::max<Ms>(30'000, 3 * m_ttl));
        p.membersInterval = p.requestedTtl / 2;
        if (m_opt.fast) {
            p.fast = true;
            for (const auto& o : m_replicas)
                if (o.id != r.id) p.peers.push_back(o.id);
            p.witness = r.witness;
            p.heartbeat = Duration(m_heartbeat);
            p.support.support = Duration(m_support);
            p.support.drift = 1e-3;  // the clocks here drift up to 500 ppm
            p.stopMargin = Duration(m_stopMargin);
        }
        return p;
    }

    void boot(Replica& r) {
        r.core = std::make_unique<core::Election>(params(r));
        r.up = true;
        r.stopping = false;
        r.frozenUntil = 0;
        r.buffered.clear();
        trace("r" + r.id + " starts (persisted lease " + std::to_string(r.persistedLease) + ")");
        deliver(r, core::Start{r.persistedLease, r.persistedDeadline});
        // The cluster pause is in the store: the first read brings it, before any campaign.
        if (m_clusterPaused) deliver(r, core::PauseRequest{true, true});
    }

    /** The process dies: its core, its pending replies, its watch and its running action. */
    void kill(Replica& r) {
        if (r.core) m_out.staleReplies += r.core->staleReplies();
        r.up = false;
        r.core.reset();
        ++r.incarnation;
        ++r.watchGen;
        ++r.wakeGen;
        r.buffered.clear();
        r.frozenUntil = 0;
        if (r.actionRunning) {
            r.actionRunning = false;
            ++r.actionGen;
        }
    }

    void deliver(Replica& r, core::Event e) {
        if (!r.up || !r.core) return;
        if (m_now < r.frozenUntil) {
            r.buffered.push_back(std::move(e));
            return;
        }
        feed(r, e);
    }

    void feed(Replica& r, const core::Event& e) {
        ++m_out.events;
        if (m_opt.trace && !std::holds_alternative<core::Tick>(e)) trace("r" + r.id + " <- " + describe(e));
        auto effects = r.core->handle(local(r), e);
        for (const auto& eff : effects) {
            if (m_opt.trace) trace("r" + r.id + " -> " + describe(eff));
            apply(r, eff);
            if (!r.up) return;
        }
        armWake(r);
    }

    void armWake(Replica& r) {
        if (!r.core) return;
        auto next = r.core->nextWakeup();
        std::uint64_t gen = ++r.wakeGen;
        if (!next) return;
        std::uint64_t inc = r.incarnation;
        schedule(toReal(r, *next), [this, &r, gen, inc] {
            if (r.incarnation != inc || r.wakeGen != gen) return;
            deliver(r, core::Tick{});
        });
    }

    // ---- network -------------------------------------------------------------------------
    Ms delay(const Replica& r) { return m_netRng.between(1, r.maxDelay); }
    bool dropped(const Replica& r, bool request) {
        if (request ? r.reqCut : r.respCut) return true;
        return m_netRng.chance(r.loss);
    }

    /** A datagram between peers: lost, duplicated or delayed by the faults on either end. */
    void peerSend(Replica& from, Replica& to, core::Event e) {
        if (m_peerCut.count({from.index, to.index})) return;
        double loss = std::max(from.peerLoss, to.peerLoss);
        if (m_netRng.chance(loss)) return;
        Ms maxDelay = std::max(from.peerMaxDelay, to.peerMaxDelay);
        int copies = m_netRng.chance(std::max(from.peerDup, to.peerDup)) ? 2 : 1;
        for (int c = 0; c < copies; ++c) {
            std::uint64_t inc = to.incarnation;
            schedule(m_now + m_netRng.between(0, maxDelay), [this, &to, inc, e] {
                if (to.incarnation == inc) deliver(to, e);
            });
        }
    }

    /** One unary request: exec runs at the store and returns the reply event; onFail is what the
     *  driver reports on a timeout or an error reply. */
    void request(Replica& r, core::RequestId id, std::function<std::optional<core::Event>()> exec, std::optional<core::Event> onFail, bool isWrite) {
        if (onFail) setReq(*onFail, id);
        std::uint64_t inc = r.incarnation;
        auto done = std::make_shared<bool>(false);
        if (onFail) {
            schedule(m_now + m_requestTimeout, [this, &r, inc, done, f = *onFail] {
                if (*done || r.incarnation != inc) return;
                *done = true;
                deliver(r, f);
            });
        }
        if (dropped(r, true)) return;
        auto arrive = [this, &r, inc, done, exec, onFail, isWrite, id](bool duplicate) {
            std::optional<core::Event> reply;
            if (!m_store.available) {
                if (isWrite && m_netRng.chance(0.3)) m_deferredWrites.push_back([exec] { (void)exec(); });  // commits later
                if (m_netRng.chance(0.5)) return;  // hangs until the client's timeout
                reply = onFail;                    // 503 "no leader"
            } else {
                reply = exec();
                notifyWatchers();
                if (!reply) reply = onFail;
                else setReq(*reply, id);
            }
            if (duplicate || !reply || dropped(r, false)) return;
            schedule(m_now + delay(r), [this, &r, inc, done, rep = *reply] {
                if (*done || r.incarnation != inc) return;
                *done = true;
                deliver(r, rep);
            });
        };
        schedule(m_now + delay(r), [arrive] { arrive(false); });
        if (m_netRng.chance(r.dup)) schedule(m_now + delay(r) + delay(r), [arrive] { arrive(true); });
    }

    void openWatch(Replica& r, std::int64_t from, core::RequestId id) {
        std::uint64_t gen = ++r.watchGen;
        r.watchId = id;
        std::uint64_t inc = r.incarnation;
        r.watchLastDelivery = m_now;
        r.watchStalled = false;
        if (dropped(r, true)) {
            stallWatch(r);
            return;
        }
        schedule(m_now + delay(r), [this, &r, gen, inc, from] {
            if (r.watchGen != gen || r.incarnation != inc) return;
            m_watchers[r.index] = {gen, from};
            notifyWatchers();
        });
    }

    /** The stream stops delivering: the driver notices the silence and reports it broken. */
    void stallWatch(Replica& r) {
        if (r.watchStalled) return;
        r.watchStalled = true;
        std::uint64_t gen = r.watchGen;
        std::uint64_t inc = r.incarnation;
        schedule(m_now + m_watchSilence, [this, &r, gen, inc] {
            if (r.watchGen != gen || r.incarnation != inc) return;
            m_watchers.erase(r.index);
            deliver(r, core::WatchBroken{"silent", r.watchId});
        });
    }

    void breakWatch(Replica& r, const std::string& why) {
        std::uint64_t gen = r.watchGen;
        std::uint64_t inc = r.incarnation;
        m_watchers.erase(r.index);
        schedule(m_now + delay(r), [this, &r, gen, inc, why] {
            if (r.watchGen != gen || r.incarnation != inc) return;
            ++r.watchGen;
            deliver(r, core::WatchBroken{why, r.watchId});
        });
    }

    /** Streams every history entry each open watch has not seen yet, in revision order. */
    void notifyWatchers() {
        for (auto& [index, w] : m_watchers) {
            Replica& r = m_replicas[static_cast<std::size_t>(index)];
            if (r.watchGen != w.first) continue;
            for (const auto& [rev, key] : m_store.history) {
                if (rev < w.second) continue;
                w.second = rev + 1;
                if (r.respCut || r.watchStalled) {
                    stallWatch(r);
                    continue;
                }
                Ms at = std::max(r.watchLastDelivery, m_now + delay(r));
                r.watchLastDelivery = at;
                std::uint64_t gen = w.first;
                std::uint64_t inc = r.incarnation;
                schedule(at, [this, &r, gen, inc, key = key, rev = rev] {
                    if (r.watchGen != gen || r.incarnation != inc) return;
                    deliver(r, core::WatchEvent{key, rev, r.watchId});
                });
            }
        }
    }

    // ---- effects -------------------------------------------------------------------------
    void apply(Replica& r, const core::Effect& effect) {
        using SRF = core::StoreRequestFailed;
        const std::string self = r.id;
        if (auto* hb = std::get_if<core::SendHeartbeat>(&effect)) {
            for (auto& o : m_replicas)
                if (o.index != r.index) peerSend(r, o, core::PeerHeartbeat{self, hb->epoch, hb->seq, hb->withdrawn});
            return;
        }
        if (auto* ack = std::get_if<core::SendAck>(&effect)) {
            for (auto& o : m_replicas)
                if (o.id == ack->to) peerSend(r, o, core::PeerAck{self, ack->epoch, ack->seq, ack->supported});
            return;
        }
        if (auto* g = std::get_if<core::GrantLease>(&effect)) {
            TimePoint sent = local(r);
            Ms ttl = std::max<Ms>(2000, (g->ttl.count() + 999) / 1000 * 1000);
            request(
                r, g->id,
                [this, ttl, sent]() -> std::optional<core::Event> {
                    std::int64_t id = m_store.nextLease++;
                    m_store.leases[id] = {ttl, m_now + ttl};
                    return core::LeaseGranted{id, Duration(ttl), sent};
                },
                core::LeaseRequestFailed{0, "timeout"}, true);
        } else if (auto* k = std::get_if<core::KeepAlive>(&effect)) {
            TimePoint sent = local(r);
            std::int64_t lease = k->lease;
            request(
                r, k->id,
                [this, lease, sent]() -> std::optional<core::Event> {
                    if (!m_store.alive(lease, m_now)) return core::LeaseLost{lease};
                    auto& l = m_store.leases[lease];
                    l.expiresAt = m_now + l.ttl;
                    return core::KeepaliveAcked{lease, Duration(l.ttl), sent};
                },
                core::LeaseRequestFailed{lease, "timeout"}, false);
        } else if (auto* v = std::get_if<core::RevokeLease>(&effect)) {
            std::int64_t lease = v->lease;
            request(
                r, 0,
                [this, lease]() -> std::optional<core::Event> {
                    m_store.dropLease(lease);
                    return std::nullopt;
                },
                std::nullopt, true);
        } else if (auto* p = std::get_if<core::PersistLease>(&effect)) {
            r.persistedLease = p->lease;
            r.persistedDeadline = p->deadline;
        } else if (auto* rl = std::get_if<core::ReadLeader>(&effect)) {
            request(
                r, rl->id, [this]() -> std::optional<core::Event> { return core::LeaderRead{m_store.key(), m_store.revision}; },
                SRF{SRF::What::Read, "timeout"}, false);
        } else if (auto* c = std::get_if<core::Campaign>(&effect)) {
            std::int64_t lease = c->lease;
            bool fast = c->fast;
            if (fast && !m_opt.fast) fail("replica " + r.id + " writes a fast key in lease mode");
            request(
                r, c->id,
                [this, lease, self, fast]() -> std::optional<core::Event> {
                    if (!m_store.alive(lease, m_now)) return std::nullopt;  // "requested lease not found"
                    if (m_store.leader) return core::CampaignResult{false, m_store.key(), m_store.revision};
                    ++m_store.revision;
                    m_store.leader = StoredLeader{self, lease, m_store.revision, "", fast};
                    m_store.record();
                    return core::CampaignResult{true, m_store.key(), m_store.revision};
                },
                SRF{SRF::What::Campaign, "timeout"}, true);
        } else if (auto* w = std::get_if<core::Watch>(&effect)) {
            openWatch(r, w->fromRevision, w->id);
        } else if (auto* d = std::get_if<core::DeleteLeader>(&effect)) {
            std::int64_t rev = d->createRevision;
            if (r.core && !r.core->holdsLeadership()) ++m_out.takeovers;
            request(
                r, d->id,
                [this, rev]() -> std::optional<core::Event> {
                    if (m_store.leader && m_store.leader->createRevision == rev) {
                        m_store.leader.reset();
                        ++m_store.revision;
                        m_store.record();
                    }
                    return core::ResignDone{};
                },
                SRF{SRF::What::Resign, "timeout"}, true);
        } else if (auto* m = std::get_if<core::MarkHandover>(&effect)) {
            auto mark = *m;
            request(
                r, m->id,
                [this, mark]() -> std::optional<core::Event> {
                    if (!m_store.leader || m_store.leader->createRevision != mark.createRevision) return std::nullopt;
                    m_store.leader->handoverTo = mark.target;
                    ++m_store.revision;
                    m_store.record();
                    return core::HandoverMarked{};
                },
                SRF{SRF::What::Handover, "timeout"}, true);
        } else if (auto* pm = std::get_if<core::PutMember>(&effect)) {
            std::int64_t lease = pm->lease;
            request(
                r, 0,
                [this, lease, self]() -> std::optional<core::Event> {
                    if (m_store.alive(lease, m_now)) m_store.members[self] = lease;
                    return std::nullopt;
                },
                std::nullopt, true);
        } else if (auto* rm = std::get_if<core::ReadMembers>(&effect)) {
            request(
                r, rm->id,
                [this]() -> std::optional<core::Event> {
                    core::MembersRead m;
                    for (const auto& [id, lease] : m_store.members) m.present.push_back(id);
                    return m;
                },
                SRF{SRF::What::Members, "timeout"}, false);
        } else if (auto* a = std::get_if<core::RunAction>(&effect)) {
            startAction(r, *a);
        } else if (std::holds_alternative<core::CancelAction>(effect)) {
            cancelAction(r);
        } else if (auto* pr = std::get_if<core::PublishRole>(&effect)) {
            if (pr->role == core::Role::Active && pr->token <= 0) fail("replica " + r.id + " active with fencing token " + std::to_string(pr->token));
        } else if (std::holds_alternative<core::Exit>(effect)) {
            trace("r" + r.id + " exits");
            Ms restartIn = r.restartAfterExit;
            kill(r);
            if (restartIn > 0) schedule(m_now + restartIn, [this, &r] { boot(r); });
        }
    }

    // ---- actions and the checkers ---------------------------------------------------------
    void startAction(Replica& r, const core::RunAction& a) {
        if (r.actionRunning) return fail("replica " + r.id + " started " + core::toString(a.kind) + " while " + core::toString(r.actionKind) + " runs");
        r.actionRunning = true;
        r.actionKind = a.kind;
        r.actionId = a.id;
        std::uint64_t gen = ++r.actionGen;
        if (r.witness) return fail("witness " + r.id + " runs " + core::toString(a.kind));
        if (a.kind == core::ActionKind::EnsureActive) beginActive(r, a.token);
        Ms dur = 0;
        auto outcome = core::ActionOutcome::Switched;
        const bool faulty = m_now < m_healAt;
        if (a.kind == core::ActionKind::EnsureActive) {
            double x = m_actRng.unit();
            if (faulty && x < 0.05) {
                outcome = core::ActionOutcome::Failed;
                dur = m_actRng.between(5, 200);
            } else if (faulty && x < 0.07) {
                outcome = core::ActionOutcome::TimedOut;
                dur = m_actionTimeout;
            } else {
                dur = m_actRng.between(5, 400);
            }
        } else if (a.kind == core::ActionKind::EnsurePassive) {
            dur = m_actRng.between(5, m_maxPassive);
        } else {
            dur = m_actRng.between(5, 50);
        }
        schedule(m_now + dur, [this, &r, gen, kind = a.kind, outcome, id = a.id] {
            if (r.actionGen != gen || !r.actionRunning) return;
            r.actionRunning = false;
            if (kind == core::ActionKind::EnsurePassive) endActive(r);
            deliver(r, core::ActionFinished{kind, outcome, "", id});
        });
    }

    void cancelAction(Replica& r) {
        if (!r.actionRunning) return;
        std::uint64_t gen = ++r.actionGen;
        auto kind = r.actionKind;
        schedule(m_now + m_actRng.between(1, 20), [this, &r, gen, kind, id = r.actionId] {
            if (r.actionGen != gen || !r.actionRunning) return;
            r.actionRunning = false;
            deliver(r, core::ActionFinished{kind, core::ActionOutcome::Cancelled, "cancelled", id});
        });
    }

    void beginActive(Replica& r, std::int64_t token) {
        if (r.serviceActive) {
            r.serviceToken = std::max(r.serviceToken, token);
            return;
        }
        for (const auto& o : m_replicas)
            if (o.index != r.index && o.serviceActive)
                return fail("two actives: replica " + r.id + " starts ensure-active (token " + std::to_string(token) +
                            ") while replica " + o.id + " is active (token " + std::to_string(o.serviceToken) + ")");
        if (token <= 0) return fail("replica " + r.id + " runs ensure-active with fencing token " + std::to_string(token));
        if (token < m_lastToken || (token == m_lastToken && r.index != m_lastTokenHolder))
            return fail("fencing token went from " + std::to_string(m_lastToken) + " (replica " + std::to_string(m_lastTokenHolder) +
                        ") to " + std::to_string(token) + " (replica " + r.id + ")");
        m_lastToken = token;
        m_lastTokenHolder = r.index;
        r.serviceActive = true;
        r.serviceToken = token;
        ++m_out.activations;
        trace("CHECK replica " + r.id + " active with token " + std::to_string(token));
    }
    void endActive(Replica& r) {
        if (r.serviceActive) trace("CHECK replica " + r.id + " passive");
        r.serviceActive = false;
    }

    void checkSettled() {
        int active = 0;
        std::string roles;
        for (const auto& r : m_replicas) {
            roles += " " + r.id + "=" + (r.core ? core::toString(r.core->role()) : "down") + (r.serviceActive ? "(service active)" : "");
            if (r.serviceActive && r.core && r.core->role() == core::Role::Active) ++active;
            else if (r.serviceActive) return fail("settled cluster: replica " + r.id + " runs its service but is " + (r.core ? core::toString(r.core->role()) : "down") + ";" + roles);
        }
        if (active != 1) fail("settled cluster (" + std::to_string(m_endAt - m_healAt) + " ms after the faults stopped) has " + std::to_string(active) + " actives:" + roles);
    }

    // ---- faults --------------------------------------------------------------------------
    void inject(const Fault& f) {
        Replica& r = m_replicas[static_cast<std::size_t>(f.replica)];
        trace(std::string("FAULT ") + name(f.kind) + " replica " + r.id + " for " + std::to_string(f.duration) + " ms");
        switch (f.kind) {
            case FaultKind::Partition:
            case FaultKind::RequestsCut:
            case FaultKind::RepliesCut: {
                bool req = f.kind != FaultKind::RepliesCut;
                bool resp = f.kind != FaultKind::RequestsCut;
                if (req) r.reqCut = true;
                if (resp) {
                    r.respCut = true;
                    stallWatch(r);
                }
                schedule(m_now + f.duration, [&r, req, resp] {
                    if (req) r.reqCut = false;
                    if (resp) r.respCut = false;
                });
                break;
            }
            case FaultKind::LossyLink: {
                r.loss = 0.05 + m_faultRng.unit() * 0.25;
                r.dup = m_faultRng.unit() * 0.1;
                r.maxDelay = m_faultRng.between(20, std::min<Ms>(400, m_requestTimeout - 50));
                schedule(m_now + f.duration, [&r] {
                    r.loss = 0;
                    r.dup = 0;
                    r.maxDelay = 5;
                });
                break;
            }
            case FaultKind::NodeCrash:
                if (!r.up) break;
                kill(r);
                endActive(r);  // the service dies with the node
                r.persistedLease = 0;  // $RUNTIME_DIRECTORY is a tmpfs
                r.persistedDeadline.reset();
                r.offset = m_faultRng.between(1000, 10'000'000);  // a new boot, a new monotonic clock
                schedule(m_now + f.duration, [this, &r] { if (!r.up) boot(r); });
                break;
            case FaultKind::PromCrash:
            case FaultKind::PromCrashNoLease:
                if (!r.up) break;
                kill(r);
                armFence(r);
                if (f.kind == FaultKind::PromCrashNoLease) {
                    r.persistedLease = 0;
                    r.persistedDeadline.reset();
                }
                schedule(m_now + f.duration, [this, &r] { if (!r.up) boot(r); });
                break;
            case FaultKind::GracefulRestart:
                if (!r.up || r.stopping) break;
                r.stopping = true;
                r.restartAfterExit = f.duration;
                deliver(r, core::StopRequest{});
                break;
            case FaultKind::Freeze:
                if (!r.up) break;
                r.frozenUntil = m_now + f.duration;
                schedule(r.frozenUntil, [this, &r, inc = r.incarnation] {
                    if (r.incarnation != inc || !r.up) return;
                    auto events = std::move(r.buffered);
                    r.buffered.clear();
                    r.frozenUntil = 0;
                    for (auto& e : events) {
                        if (!r.up) break;
                        feed(r, e);
                    }
                });
                break;
            case FaultKind::StoreDown:
                if (!m_store.available) break;
                m_store.available = false;
                schedule(m_now + std::min<Ms>(f.duration, 1000), [this] {
                    if (m_store.available) return;
                    for (auto& o : m_replicas)
                        if (m_watchers.count(o.index)) breakWatch(o, "no leader");
                });
                schedule(m_now + f.duration, [this] {
                    m_store.available = true;
                    m_store.resetLeases(m_now);  // a new store leader restarts every lease
                    for (auto& w : m_deferredWrites) w();
                    m_deferredWrites.clear();
                    notifyWatchers();
                });
                break;
            case FaultKind::WatchCancel:
                if (m_watchers.count(r.index)) breakWatch(r, "cancelled by the store");
                break;
            case FaultKind::Switchover: {
                if (!r.up || !r.core) break;
                std::string target = f.target < 0 ? "" : std::to_string(f.target);
                std::vector<std::string> ids;
                for (const auto& o : m_replicas) ids.push_back(o.id);
                if (r.core->canSwitchover(target, ids) == core::RequestResult::Accepted) deliver(r, core::SwitchoverRequest{target});
                break;
            }
            case FaultKind::Resign:
                if (r.up && r.core && r.core->canResign() == core::RequestResult::Accepted) deliver(r, core::ResignRequest{});
                break;
            case FaultKind::Pause:
                if (f.at % 2 == 0) {
                    // promctl -c pause --cluster: control/pause reaches every replica with its
                    // watch (a booting one with its first read), and goes the same way.
                    setClusterPause(true);
                    schedule(m_now + f.duration, [this] { setClusterPause(false); });
                    break;
                }
                deliver(r, core::PauseRequest{true});
                schedule(m_now + f.duration, [this, &r] { deliver(r, core::PauseRequest{false}); });
                break;
            case FaultKind::PeerPartition:
            case FaultKind::PeerOneWay: {
                const bool out = f.kind == FaultKind::PeerPartition || m_faultRng.chance(0.5);
                const bool in = f.kind == FaultKind::PeerPartition || !out;
                std::vector<std::pair<int, int>> cut;
                for (const auto& o : m_replicas) {
                    if (o.index == r.index) continue;
                    if (out) cut.emplace_back(r.index, o.index);
                    if (in) cut.emplace_back(o.index, r.index);
                }
                for (const auto& c : cut) ++m_peerCut[c];
                schedule(m_now + f.duration, [this, cut] {
                    for (const auto& c : cut)
                        if (--m_peerCut[c] == 0) m_peerCut.erase(c);
                });
                break;
            }
            case FaultKind::PeerLossy:
                r.peerLoss = 0.05 + m_faultRng.unit() * 0.3;
                r.peerDup = m_faultRng.unit() * 0.1;
                r.peerMaxDelay = m_faultRng.between(5, 300);
                schedule(m_now + f.duration, [&r] {
                    r.peerLoss = 0;
                    r.peerDup = 0;
                    r.peerMaxDelay = 2;
                });
                break;
        }
    }

    /** The fence held by PID 1 (prom@.service ExecStopPost, prom(8) FENCE): when prom dies while
     *  its service may be active, systemd runs the saved ensure-passive at the persisted deadline
     *  unless a restarted prom has resumed the leadership by then (it then removes the armed
     *  copy); a restarted prom that did not resume leaves the fence armed. */
    void armFence(Replica& r) {
        if (!m_opt.fence || !r.persistedDeadline) return;
        schedule(toReal(r, *r.persistedDeadline), [this, &r] {
            if (r.up && r.core && r.core->holdsLeadership()) return;
            trace("r" + r.id + " fence: ensure-passive at the persisted deadline");
            schedule(m_now + m_actRng.between(5, m_maxPassive), [this, &r] {
                if (!(r.up && r.core && r.core->holdsLeadership())) endActive(r);
            });
        });
    }

    void setClusterPause(bool paused) {
        trace(std::string("cluster ") + (paused ? "paused" : "resumed"));
        m_clusterPaused = paused;
        for (auto& o : m_replicas) {
            const Ms delay = 1 + static_cast<Ms>(o.index) * 3;
            schedule(m_now + delay, [this, &o] {
                // The newest state wins, as a watch delivers it (an older schedule may fire later).
                deliver(o, core::PauseRequest{m_clusterPaused, true});
            });
        }
    }

    void heal() {
        trace("HEAL: faults stop");
        m_clusterPaused = false;
        m_peerCut.clear();
        for (auto& r : m_replicas) {
            r.reqCut = r.respCut = false;
            r.loss = r.dup = 0;
            r.maxDelay = 5;
            r.peerLoss = r.peerDup = 0;
            r.peerMaxDelay = 2;
            if (!r.up && !r.stopping) boot(r);
            deliver(r, core::PauseRequest{false});
            deliver(r, core::PauseRequest{false, true});
        }
    }

    Options m_opt;
    bool m_clusterPaused = false;  ///< control/pause exists in the store
    Rng m_faultRng;
    Rng m_netRng;
    Rng m_actRng;
    Ms m_ttl = 3000;
    Ms m_margin = 1250;
    Ms m_maxPassive = 300;
    Ms m_requestTimeout = 1000;
    Ms m_watchSilence = 2000;
    Ms m_actionTimeout = 1500;
    bool m_restartablePeers = false;
    Ms m_heartbeat = 25;
    Ms m_support = 200;
    Ms m_stopMargin = 60;
    std::map<std::pair<int, int>, int> m_peerCut;  ///< (from, to) -> faults dropping that direction
    std::vector<Replica> m_replicas;
    std::vector<Fault> m_faults;
    Ms m_healAt = 0;
    Ms m_endAt = 0;
    Ms m_now = 0;
    std::uint64_t m_seq = 0;
    std::priority_queue<Scheduled, std::vector<Scheduled>, Later> m_queue;
    StoreModel m_store;
    std::map<int, std::pair<std::uint64_t, std::int64_t>> m_watchers;  ///< replica -> (watch gen, next revision)
    std::vector<std::function<void()>> m_deferredWrites;
    std::int64_t m_lastToken = 0;
    int m_lastTokenHolder = -1;
    Outcome m_out;
};

}  // namespace

Outcome run(const Options& options) {
    Cluster c(options);
    return c.run();
}

Options shrink(const Options& failing) {
    Options o = failing;
    o.trace = false;
    std::size_t n = run(o).faults;
    for (std::size_t i = 0; i < n; ++i) {
        if (o.skipFaults.count(i)) continue;
        Options t = o;
        t.skipFaults.insert(i);
        if (!run(t).ok) o = t;
    }
    return o;
}

}  // namespace prom::sim

#include "core/election.hpp"

#include <algorithm>

namespace prom::core {

const char* toString(Role r) {
    switch (r) {
        case Role::Starting: return "starting";
        case Role::Passive: return "passive";
        case Role::Promoting: return "promoting";
        case Role::Active: return "active";
        case Role::Demoting: return "demoting";
        case Role::Stopping: return "stopping";
    }
    return "?";
}

const char* toString(ActionKind k) {
    switch (k) {
        case ActionKind::EnsureActive: return "ensure-active";
        case ActionKind::EnsurePassive: return "ensure-passive";
        case ActionKind::RestartPeer: return "restart-prom";
    }
    return "?";
}

Election::Election(Params p)
    : m_p(std::move(p)), m_supporter(m_p.support), m_holder(m_p.support, static_cast<int>(m_p.peers.size()) + 1) {}

void Election::reconfigure(const Params& p) {
    Params n = p;
    n.self = m_p.self;
    n.requestedTtl = m_p.requestedTtl;
    n.demoteMargin = m_p.demoteMargin;
    // Membership and timing of peer support are fixed for the process: changing the majority
    // under running promises would break the intersection argument.
    n.fast = m_p.fast;
    n.peers = m_p.peers;
    n.witness = m_p.witness;
    n.heartbeat = m_p.heartbeat;
    n.support = m_p.support;
    n.stopMargin = m_p.stopMargin;
    m_p = std::move(n);
    auto known = [this](const std::string& peer) {
        return std::find(m_p.restartablePeers.begin(), m_p.restartablePeers.end(), peer) != m_p.restartablePeers.end();
    };
    std::erase_if(m_missingSince, [&](const auto& kv) { return !known(kv.first); });
    std::erase_if(m_nextRestart, [&](const auto& kv) { return !known(kv.first); });
    std::erase_if(m_restartQueue, [&](const std::string& peer) { return !known(peer); });
}

std::int64_t Election::currentLease() const {
    if (auto* h = std::get_if<LeaseHeld>(&m_lease)) return h->id;
    return 0;
}

std::optional<std::int64_t> Election::heldToken() const {
    if (auto* l = std::get_if<Leading>(&m_leadership)) return l->token;
    if (auto* h = std::get_if<HandingOver>(&m_leadership)) return h->token;
    return std::nullopt;
}

std::optional<TimePoint> Election::deadline() const {
    auto* h = std::get_if<LeaseHeld>(&m_lease);
    if (!h) return std::nullopt;
    TimePoint d = h->lastAckSent + h->ttl - m_p.demoteMargin;
    if (holdsFastKey()) {
        // Before a majority has acknowledged the new epoch it is only Promoting (ensure-active
        // waits for support): the grace bounds how long it holds the key without.
        auto s = supportDeadline();
        d = std::min(d, s ? *s : m_supportGrace);
    }
    return d;
}

bool Election::holdsFastKey() const { return m_p.fast && m_heldFast && heldToken().has_value(); }

std::optional<TimePoint> Election::supportDeadline() const {
    if (!holdsFastKey() || m_holder.epoch() != *heldToken()) return std::nullopt;
    auto q = m_holder.deadline();
    if (!q) return std::nullopt;
    if (*q == TimePoint::max()) return q;
    return *q - m_p.stopMargin;
}

bool Election::supportHolds() const {
    if (!holdsFastKey()) return true;
    auto s = supportDeadline();
    return s && m_now < *s;
}

unsigned Election::peerSupport() const { return holdsFastKey() ? m_holder.supporters(m_now) : 0; }

bool Election::isPeer(const std::string& id) const {
    return std::find(m_p.peers.begin(), m_p.peers.end(), id) != m_p.peers.end();
}

bool Election::peersSettled() const {
    // Fast mode: right after a start the peers may not have answered yet; a campaign then would
    // write a slow key for the whole term. Wait for round trips with a majority, or 2 x S.
    return !m_p.fast || peersReachable() || m_now >= m_startedAt + 2 * m_p.support.support;
}

bool Election::peersReachable() const {
    int n = 1;
    for (const auto& [peer, at] : m_lastAck)
        if (m_now < at + m_p.support.support) ++n;
    return n >= m_holder.quorum();
}

void Election::enterLeading(std::int64_t token, std::int64_t lease, bool fastKey) {
    m_leadership = Leading{token, lease};
    m_token = std::max(m_token, token);
    m_heldFast = m_p.fast && fastKey;
    if (m_heldFast) {
        m_holder.begin(token);
        m_supportGrace = m_now + m_p.support.support;
        m_heartbeatNow = true;  // the first heartbeat of the new epoch goes out at once
    }
}

std::optional<TimePoint> Election::fenceDeadline() const {
    auto d = deadline();
    if (!d || !holdsFastKey() || *d == TimePoint::max()) return d;
    const auto step = std::max<Duration>(Duration(1), m_p.support.support / 4);
    return TimePoint(d->time_since_epoch() - d->time_since_epoch() % step);
}

RequestResult Election::canResign() const {
    if (!std::holds_alternative<Leading>(m_leadership) || !(m_role == Role::Active || m_role == Role::Promoting))
        return RequestResult::NotActive;
    // A cluster paused takes over nowhere: giving up the role would leave no active.
    return m_clusterPaused ? RequestResult::Paused : RequestResult::Accepted;
}

RequestResult Election::canSwitchover(const std::string& target, const std::vector<std::string>& replicas) const {
    if (!target.empty() && (target == m_p.self || std::find(replicas.begin(), replicas.end(), target) == replicas.end()))
        return RequestResult::InvalidArgs;
    return canResign();
}

std::vector<Effect> Election::handle(TimePoint now, const Event& event) {
    m_out.clear();
    m_now = now;
    // A deadline that passed before this event was due at its own time (the daemon's timer may
    // fire late): demote first, so that a late reply cannot extend leadership retroactively.
    checkDeadlines();
    std::visit([this](const auto& e) { on(e); }, event);
    expireSupport();
    checkDeadlines();
    evaluateOwnership();
    drive();
    return std::move(m_out);
}

bool Election::stale(RequestId got, RequestId current) {
    if (got != 0 && got == current) return false;
    ++m_staleReplies;
    return true;
}

void Election::setRole(Role r, const std::string& reason) {
    if (r == m_role) return;
    m_role = r;
    emit(PublishRole{r, m_leader.exists ? m_leader.holder : "", m_token, reason});
}

void Election::learnLeader(const LeaderKey& key) {
    bool changed = !m_leaderKnown || key.exists != m_leader.exists || key.holder != m_leader.holder ||
                   key.createRevision != m_leader.createRevision;
    m_leader = key;
    m_leaderKnown = true;
    if (key.exists) {
        // Whoever took over, the wait for a switchover's target is over: if this key goes
        // too, it is an ordinary failover.
        m_deferUntil.reset();
        // Fencing tokens seen by this replica never go backwards (a stale member may answer).
        m_token = std::max(m_token, key.createRevision);
        if (m_p.fast) {
            // Older epochs' keys are gone from the store: they can never lead again.
            m_supporter.forgetBelow(m_token);
            std::erase_if(m_withdrawals, [&](const auto& kv) { return kv.first < m_token; });
            if (key.fast && key.holder != m_p.self) m_supporter.onKey(m_now, key.holder, key.createRevision);
        }
        if (key.holder != m_p.self) m_seenOtherActive = true;
    }
    if (changed) emit(PublishLeader{key.exists ? key.holder : "", m_token});
}

void Election::persist() {
    std::int64_t lease = currentLease();
    if (auto* r = std::get_if<Resuming>(&m_lease)) lease = r->id;
    emit(PersistLease{lease, m_serviceDeadline});
}

void Election::queueAction(ActionKind k) {
    if (m_p.witness) return;  // a witness only votes: it runs no actions
    if (m_running && m_running->kind == k) {
        // Already running, but it may have started before the state changed: run it once more.
        m_queued = k;
        return;
    }
    if (m_running) emit(CancelAction{});
    m_queued = k;
}

void Election::startAction(ActionKind k, const std::string& peer) {
    m_running = Running{k, next()};
    if (k != ActionKind::RestartPeer) m_nextEnsureAt.reset();
    if (k == ActionKind::EnsureActive) {
        // From now on the service may be active: a prom restarted before ensure-passive has
        // finished must be passive by this deadline (persisted before the action starts).
        m_serviceDeadline = deadline();
        persist();
    }
    emit(RunAction{k, m_role, m_leader.exists ? m_leader.holder : "", m_token, peer, m_running->req});
}

void Election::settlePassive() {
    if (m_settled) return;
    m_settled = true;
    if (m_p.witness) {
        setRole(Role::Passive, "witness: votes only");
        return;
    }
    queueAction(ActionKind::EnsurePassive);
}

void Election::loseLeadership(const std::string& reason, bool abandonLease) {
    if (holdsFastKey()) {
        // A fast epoch ends for good: peers may be withdrawing it already, so this replica must
        // never count (or re-adopt) it again, even if a late ack or a restarted peer backs it.
        m_resignedToken = std::max(m_resignedToken.value_or(*heldToken()), *heldToken());
        m_holder.begin(0);
    }
    m_leadership = NotLeader{};
    m_failures = 0;
    m_restartQueue.clear();
    m_missingSince.clear();
    // What we knew of the leader key came before we lost it; only a fresh read may say that it
    // is ours again (a store whose session survives, like MUSIC's queue place, would otherwise
    // match the stale knowledge at once).
    m_leaderKnown = false;
    m_readWanted = true;
    bool demoting = m_role == Role::Active || m_role == Role::Promoting || m_role == Role::Demoting || m_role == Role::Stopping;
    if (demoting) {
        setRole(m_stopping ? Role::Stopping : Role::Demoting, reason);
        queueAction(ActionKind::EnsurePassive);
    }
    if (abandonLease) {
        if (auto* h = std::get_if<LeaseHeld>(&m_lease)) {
            // The lease may still live in the store (we only lost contact). Revoking it frees the
            // leader key at once when the store is reachable, so it waits until ensure-passive
            // has finished: a peer must not start while this service still runs.
            if (demoting) m_abandoned = h->id;
            else emit(RevokeLease{h->id});
            m_lease = NoLease{};
            persist();
        }
    }
}

void Election::handOver(const std::string& target, Role role, const std::string& reason) {
    auto* l = std::get_if<Leading>(&m_leadership);
    if (!l) return;
    m_leadership = HandingOver{HandingOver::Step::Demote, l->token, l->lease, target, 0, std::nullopt};
    m_failures = 0;
    setRole(role, reason);
    queueAction(ActionKind::EnsurePassive);
}

void Election::checkDeadlines() {
    if (!m_started || m_exited) return;
    if (heldToken()) {
        auto d = deadline();
        if (!d || m_now >= *d) {
            auto* h = std::get_if<LeaseHeld>(&m_lease);
            const bool etcd = !h || m_now >= h->lastAckSent + h->ttl - m_p.demoteMargin;
            loseLeadership(etcd ? "lease deadline passed: no keepalive acknowledged for TTL - margin (store unreachable?)"
                                : "peer support lost: no majority acknowledged a heartbeat for support-ms (peer network?)",
                           true);
        }
    }
    if (!m_settled && m_startDeadline && m_now >= *m_startDeadline && !heldToken()) {
        // No answer from the store in time to prove this replica still holds the leader key.
        emit(PublishError{"store did not answer at start in time to resume: starting passive"});
        settlePassive();
    }
}

void Election::evaluateOwnership() {
    if (heldToken() || !m_leaderKnown || !m_leader.exists || m_stopping) return;
    std::int64_t lease = currentLease();
    if (!lease || m_leader.holder != m_p.self || m_leader.lease != lease) return;
    // Only on a lease still fresh by our own clock: past the deadline the store may already
    // have expired it and a peer may be starting (seed 1000509702).
    if (auto d = deadline(); !d || m_now >= *d) return;
    // A key this replica resigned stays resigned: a watch event older than the delete (its
    // handover mark, say) may arrive after ResignDone.
    if (m_resignedToken && m_leader.createRevision <= *m_resignedToken) return;
    // The leader key is ours, on our live lease: either prom restarted while active (resume
    // without failover) or a campaign whose reply was lost (or not yet seen) did commit.
    enterLeading(m_leader.createRevision, lease, m_leader.fast);
    std::string token = std::to_string(m_leader.createRevision);
    if (!m_settled) {
        m_settled = true;
        setRole(Role::Active, "resumed: this replica still holds the leader key with token " + token);
        m_serviceDeadline = deadline();
        persist();
        m_nextEnsureAt = m_now;
    } else {
        setRole(Role::Promoting, "holds the leader key with token " + token);
        queueAction(ActionKind::EnsureActive);
    }
}

// ---- events -------------------------------------------------------------------------------

void Election::on(const Start& e) {
    m_started = true;
    m_startedAt = m_now;
    m_supporter.start(m_now);
    if (m_p.fast) {
        // A restarted prom never resumes a fast key: its peers may be withdrawing its epoch
        // already. The old lease goes once the service is passive (its key with it).
        m_serviceDeadline = e.persistedDeadline;
        if (e.persistedLease) {
            if (m_p.witness) emit(RevokeLease{e.persistedLease});
            else m_abandoned = e.persistedLease;
        }
        settlePassive();
        return;
    }
    m_startDeadline = m_now + (m_p.requestedTtl - m_p.demoteMargin);
    if (e.persistedDeadline) {
        // The previous run may have left the service active: passive by its deadline at the
        // latest, unless the store confirms the leader key first.
        m_startDeadline = std::min(*m_startDeadline, *e.persistedDeadline);
        m_serviceDeadline = e.persistedDeadline;
    }
    if (e.persistedLease) {
        m_lease = Resuming{e.persistedLease, next()};
        emit(KeepAlive{e.persistedLease, std::get<Resuming>(m_lease).req});
    }
    // Nothing to resume: the previous run left the service passive (or there was none).
    if (!e.persistedDeadline) settlePassive();
}

void Election::on(const LeaseGranted& e) {
    auto* g = std::get_if<Granting>(&m_lease);
    if (!g || stale(e.req, g->req)) return;
    m_leaseRetryAt.reset();
    if (m_stopping) {
        emit(RevokeLease{e.lease});
        m_lease = NoLease{};
        return;
    }
    // Never trust a TTL above the one asked for: a longer one would move the local deadline
    // beyond what the operator configured (and a hostile value beyond any bound).
    Duration ttl = std::clamp(e.ttl, Duration{0}, m_p.requestedTtl);
    m_lease = LeaseHeld{e.lease, ttl, e.sentAt, e.sentAt + keepalivePeriod(ttl), 0};
    persist();
    emit(PutMember{e.lease});
}

void Election::on(const KeepaliveAcked& e) {
    Duration ttl = std::clamp(e.ttl, Duration{0}, m_p.requestedTtl);
    if (auto* r = std::get_if<Resuming>(&m_lease)) {
        if (stale(e.req, r->req) || e.lease != r->id) return;
        m_leaseRetryAt.reset();
        const std::int64_t lease = r->id;
        m_lease = LeaseHeld{lease, ttl, e.sentAt, e.sentAt + keepalivePeriod(ttl), 0};
        // The member key on the resumed lease still says what the previous run wrote (its
        // pid, role, pause): this run rewrites it, as after a grant.
        emit(PutMember{lease});
        return;
    }
    auto* h = std::get_if<LeaseHeld>(&m_lease);
    if (!h || stale(e.req, h->keepalive) || e.lease != h->id) return;
    m_leaseRetryAt.reset();
    h->keepalive = 0;
    h->ttl = ttl;
    h->lastAckSent = std::max(h->lastAckSent, e.sentAt);
    h->nextKeepalive = e.sentAt + keepalivePeriod(ttl);
    if (heldToken() && m_serviceDeadline) {
        m_serviceDeadline = deadline();
        persist();
    }
}

void Election::on(const LeaseLost& e) {
    if (auto* r = std::get_if<Resuming>(&m_lease)) {
        if (stale(e.req, r->req)) return;
        m_lease = NoLease{};
        persist();
        settlePassive();  // the previous run's lease, and with it its leader key, is gone
        return;
    }
    auto* h = std::get_if<LeaseHeld>(&m_lease);
    if (!h || stale(e.req, h->keepalive)) return;
    m_lease = NoLease{};
    if (heldToken()) loseLeadership("the lease expired in the store", false);
    persist();
}

void Election::on(const LeaseRequestFailed& e) {
    if (auto* g = std::get_if<Granting>(&m_lease)) {
        if (stale(e.req, g->req)) return;
        m_lease = NoLease{};
        m_leaseRetryAt = m_now + m_p.storeRetry;
    } else if (auto* r = std::get_if<Resuming>(&m_lease)) {
        if (stale(e.req, r->req)) return;
        r->req = 0;
        m_leaseRetryAt = m_now + m_p.storeRetry;
    } else if (auto* h = std::get_if<LeaseHeld>(&m_lease)) {
        if (stale(e.req, h->keepalive)) return;
        h->keepalive = 0;
        m_leaseRetryAt = m_now + std::min(m_p.storeRetry, h->ttl / 6);
    } else {
        ++m_staleReplies;
    }
}

void Election::on(const LeaderRead& e) {
    if (stale(e.req, m_read)) return;
    m_read = 0;
    m_readRetryAt.reset();
    if (e.revision < m_revision) {
        // A member behind what this replica has already seen: ask again rather than step back.
        ++m_staleReplies;
        m_readRetryAt = m_now + m_p.storeRetry;
        return;
    }
    m_readWanted = false;
    m_revision = e.revision;
    m_supporter.setFloor(e.revision);
    if (auto t = heldToken(); t && (!e.key.exists || e.key.createRevision != *t))
        loseLeadership("the leader key is no longer ours", false);
    learnLeader(e.key);
    if (!m_watch) {
        m_watch = next();
        emit(Watch{e.revision + 1, m_watch});
    }
    std::int64_t resuming = 0;
    if (auto* r = std::get_if<Resuming>(&m_lease)) resuming = r->id;
    bool maybeOurs = e.key.exists && e.key.holder == m_p.self && e.key.lease &&
                     (e.key.lease == currentLease() || e.key.lease == resuming);
    if (!maybeOurs) settlePassive();
}

void Election::on(const CampaignResult& e) {
    auto* c = std::get_if<Campaigning>(&m_leadership);
    if (!c || stale(e.req, c->req)) return;
    const std::int64_t lease = c->lease;
    m_leadership = NotLeader{};
    m_handoverToMe = false;
    m_revision = std::max(m_revision, e.revision);
    learnLeader(e.key);
    // A win only counts for the lease being renewed now: a key bound to a lease this replica
    // has given up goes with that lease.
    const bool ours = e.won && e.key.exists && e.key.holder == m_p.self && e.key.lease == lease && lease == currentLease();
    if (ours && m_stopping) {
        m_leadership = HandingOver{HandingOver::Step::Delete, e.key.createRevision, lease, "", 0, std::nullopt};
    } else if (ours) {
        enterLeading(e.key.createRevision, lease, e.key.fast);
        m_failures = 0;
        setRole(Role::Promoting, "won the election with token " + std::to_string(e.key.createRevision));
        queueAction(ActionKind::EnsureActive);
    }
    if (!m_watch) {
        m_watch = next();
        emit(Watch{e.revision + 1, m_watch});
    }
}

void Election::on(const StoreRequestFailed& e) {
    using What = StoreRequestFailed::What;
    switch (e.what) {
        case What::Read:
            if (stale(e.req, m_read)) return;
            m_read = 0;
            m_readRetryAt = m_now + m_p.storeRetry;
            return;
        case What::Campaign: {
            auto* c = std::get_if<Campaigning>(&m_leadership);
            if (!c || stale(e.req, c->req)) return;
            m_leadership = NotLeader{};
            m_readWanted = true;  // the txn may have committed: a read tells
            m_readRetryAt = m_now + m_p.storeRetry;
            return;
        }
        case What::Members:
            if (stale(e.req, m_members)) return;
            m_members = 0;
            return;
        case What::Handover:
        case What::Resign: {
            if (m_takeover && e.what == What::Resign && e.req == m_takeover->req) {
                m_takeover.reset();
                m_readWanted = true;  // the delete may have committed: a read tells
                m_readRetryAt = m_now + m_p.storeRetry;
                return;
            }
            auto* h = std::get_if<HandingOver>(&m_leadership);
            if (!h || stale(e.req, h->req)) return;
            h->req = 0;
            if (h->step == HandingOver::Step::Mark) {
                h->step = HandingOver::Step::Delete;  // best effort: without the mark, priorities decide
            } else {
                h->retryAt = m_now + m_p.storeRetry;
            }
            return;
        }
    }
}

void Election::on(const WatchEvent& e) {
    if (stale(e.req, m_watch)) return;
    if (e.revision <= m_revision) {
        ++m_staleReplies;  // older than what a read or campaign already told
        return;
    }
    m_revision = e.revision;
    if (e.key.exists) m_handoverToMe = false;
    if (!e.key.exists && m_leader.exists && !m_leader.handoverTo.empty() && !heldToken()) {
        // The deleted key named a successor: it campaigns at once, the others give it one TTL
        // before they campaign too (in case it is dead).
        if (m_leader.handoverTo == m_p.self) {
            // Its resign cooldown keeps it from grabbing back a role it gave up on its own;
            // named (a switchover back to it), it takes the role at once, as the others
            // leave it one TTL.
            m_handoverToMe = true;
            m_noCampaignUntil.reset();
            m_deferUntil.reset();
        } else {
            m_deferUntil = m_now + m_p.requestedTtl;
        }
    }
    if (auto t = heldToken()) {
        auto* h = std::get_if<HandingOver>(&m_leadership);
        bool ownDelete = h && h->step == HandingOver::Step::Delete && h->req;
        if (!e.key.exists && !ownDelete) loseLeadership("the leader key was deleted", false);
        else if (e.key.exists && e.key.createRevision != *t) loseLeadership("another replica holds the leader key", false);
    }
    learnLeader(e.key);
}

void Election::on(const WatchBroken& e) {
    if (stale(e.req, m_watch)) return;
    m_watch = 0;
    m_readWanted = true;
}

void Election::on(const ActionFinished& f) {
    if (!m_running || stale(f.req, m_running->req)) return;
    m_running.reset();
    const bool ok = f.outcome == ActionOutcome::AlreadyInMode || f.outcome == ActionOutcome::Switched;
    if (f.outcome == ActionOutcome::Cancelled) return;
    if (f.kind == ActionKind::RestartPeer) {
        if (!ok) emit(PublishError{"restart-prom failed: " + f.detail});
        return;
    }
    if (f.kind == ActionKind::EnsureActive) {
        if (!std::holds_alternative<Leading>(m_leadership)) return;  // lost meanwhile: ensure-passive is queued
        if (ok) {
            m_failures = 0;
            if (m_role == Role::Promoting) setRole(Role::Active, "ensure-active succeeded");
            m_nextEnsureAt = m_now + m_p.monitorInterval;
            return;
        }
        ++m_failures;
        emit(PublishError{"ensure-active failed (" + std::to_string(m_failures) + "/" + std::to_string(m_p.retryAttempts) +
                          "): " + f.detail});
        // Paused (maintenance): no demotion on a failed check; the retries go on after resume.
        if (m_failures >= m_p.retryAttempts && !paused())
            handOver("", Role::Demoting, "ensure-active failed " + std::to_string(m_p.retryAttempts) + " times: resigning");
        else
            m_nextEnsureAt = m_now + m_p.retryBackoff;
        return;
    }
    // ensure-passive
    if (!ok) {
        ++m_passiveFailures;
        emit(PublishError{"ensure-passive failed (" + std::to_string(m_passiveFailures) + "/" +
                          std::to_string(m_p.retryAttempts) + "): " + f.detail});
        if (m_passiveFailures < m_p.retryAttempts && m_role != Role::Passive) {
            // Retry before handing over: a replica that is still active must not get company.
            m_nextEnsureAt = m_now + m_p.retryBackoff;
            m_retryPassive = true;
            return;
        }
    }
    m_passiveFailures = 0;
    if (ok && m_serviceDeadline) {
        m_serviceDeadline.reset();
        persist();
    }
    if (m_abandoned) {
        emit(RevokeLease{m_abandoned});
        m_abandoned = 0;
    }
    if (auto* h = std::get_if<HandingOver>(&m_leadership); h && h->step == HandingOver::Step::Demote)
        h->step = h->target.empty() ? HandingOver::Step::Delete : HandingOver::Step::Mark;
    if (m_role == Role::Starting || m_role == Role::Demoting) setRole(Role::Passive, "ensure-passive finished");
    m_nextEnsureAt = m_now + (ok ? m_p.monitorInterval : m_p.retryBackoff);
}

void Election::on(const ResignDone& e) {
    if (m_takeover && e.req == m_takeover->req) {
        // The withdrawn fast key is gone (or was already replaced): campaign at once, the
        // create-if-absent txn decides between takers.
        std::int64_t epoch = m_takeover->epoch;
        m_takeover.reset();
        if (m_leader.exists && m_leader.createRevision == epoch) {
            learnLeader(LeaderKey{});
            m_handoverToMe = true;
        }
        return;
    }
    auto* h = std::get_if<HandingOver>(&m_leadership);
    if (!h || stale(e.req, h->req)) return;
    m_resignedToken = std::max(m_resignedToken.value_or(h->token), h->token);
    m_holder.begin(0);
    m_leadership = NotLeader{};
    m_noCampaignUntil = m_now + m_p.resignCooldown;
    // The key is gone (or was no longer ours): the watch may report the delete after this
    // reply, and must not find "our" key still there meanwhile.
    if (m_leader.exists && m_leader.holder == m_p.self) learnLeader(LeaderKey{});
}

void Election::on(const MembersRead& m) {
    if (stale(m.req, m_members)) return;
    m_members = 0;
    if (!std::holds_alternative<Leading>(m_leadership) || m_role != Role::Active) return;
    for (const auto& peer : m_p.restartablePeers) {
        bool present = std::find(m.present.begin(), m.present.end(), peer) != m.present.end();
        if (present) {
            m_missingSince.erase(peer);
            continue;
        }
        auto [it, first] = m_missingSince.emplace(peer, m_now);
        if (first || m_now - it->second < m_p.requestedTtl) continue;
        auto nextAt = m_nextRestart.find(peer);
        if (nextAt != m_nextRestart.end() && m_now < nextAt->second) continue;
        // Rate-limited: one restart per peer per backoff, never piling up (PROM started a new
        // thread per dead peer on every loop).
        m_nextRestart[peer] = m_now + m_p.restartPeerBackoff;
        if (std::find(m_restartQueue.begin(), m_restartQueue.end(), peer) == m_restartQueue.end())
            m_restartQueue.push_back(peer);
    }
}

void Election::on(const ResignRequest&) {
    if (canResign() == RequestResult::Accepted) handOver("", Role::Demoting, "resign requested");
}

void Election::on(const SwitchoverRequest& e) {
    if (canResign() != RequestResult::Accepted) return;
    handOver(e.target, Role::Demoting, e.target.empty() ? "switchover requested" : "switchover to " + e.target + " requested");
}

void Election::on(const HandoverMarked& e) {
    auto* h = std::get_if<HandingOver>(&m_leadership);
    if (!h || h->step != HandingOver::Step::Mark || stale(e.req, h->req)) return;
    h->step = HandingOver::Step::Delete;
    h->req = 0;
}

void Election::on(const PauseRequest& e) {
    (e.cluster ? m_clusterPaused : m_paused) = e.pause;
    m_campaignAt.reset();
}

void Election::on(const StopRequest&) {
    if (m_stopping) return;
    m_stopping = true;
    m_campaignAt.reset();
    if (std::holds_alternative<Leading>(m_leadership)) {
        handOver("", Role::Stopping, "stopping: handing over");
        return;
    }
    setRole(Role::Stopping, "stopping");
    // A demotion in progress finishes first: prom never exits with its service possibly active.
    if (m_running && m_running->kind != ActionKind::EnsurePassive) emit(CancelAction{});
    if (m_queued != ActionKind::EnsurePassive) m_queued.reset();
    if (m_serviceDeadline && !heldToken() && !(m_running && m_running->kind == ActionKind::EnsurePassive))
        m_queued = ActionKind::EnsurePassive;
}

// ---- driving ------------------------------------------------------------------------------

void Election::drive() {
    if (!m_started || m_exited) return;
    driveLease();
    driveLeaderKey();
    driveActions();
    driveFast();
    if (m_stopping && !heldToken() && !m_running && !m_queued && !m_retryPassive) {
        m_exited = true;
        if (std::int64_t lease = currentLease()) emit(RevokeLease{lease});
        if (m_abandoned) emit(RevokeLease{m_abandoned});
        m_abandoned = 0;
        m_lease = NoLease{};
        emit(PersistLease{0, m_serviceDeadline});
        emit(Exit{});
    }
}

void Election::driveLease() {
    if (m_stopping || (m_leaseRetryAt && m_now < *m_leaseRetryAt)) return;
    if (std::holds_alternative<NoLease>(m_lease)) {
        m_leaseRetryAt.reset();
        m_lease = Granting{next()};
        emit(GrantLease{m_p.requestedTtl, std::get<Granting>(m_lease).req});
    } else if (auto* h = std::get_if<LeaseHeld>(&m_lease); h && !h->keepalive && m_now >= h->nextKeepalive) {
        m_leaseRetryAt.reset();
        h->keepalive = next();
        emit(KeepAlive{h->id, h->keepalive});
    } else if (auto* r = std::get_if<Resuming>(&m_lease); r && !r->req) {
        m_leaseRetryAt.reset();
        r->req = next();
        emit(KeepAlive{r->id, r->req});
    }
}

void Election::driveLeaderKey() {
    auto due = [this](const std::optional<TimePoint>& t) { return !t || m_now >= *t; };
    if (m_readWanted && !m_read && due(m_readRetryAt)) {
        m_readRetryAt.reset();
        m_read = next();
        emit(ReadLeader{m_read});
    }

    auto* held = std::get_if<LeaseHeld>(&m_lease);
    const bool leaseFresh = held && m_now < held->lastAckSent + held->ttl - m_p.demoteMargin;
    const bool mayCampaign = !m_p.witness && m_role == Role::Passive && std::holds_alternative<NotLeader>(m_leadership) && leaseFresh &&
                             m_leaderKnown && !m_leader.exists && !m_readWanted && !paused() && !m_stopping &&
                             due(m_noCampaignUntil) && due(m_deferUntil) && (!m_p.startPassive || m_seenOtherActive) && peersSettled();
    if (mayCampaign) {
        if (!m_campaignAt) m_campaignAt = m_now + (m_handoverToMe ? Duration{0} : m_p.campaignDelay);
        if (m_now >= *m_campaignAt) {
            m_campaignAt.reset();
            m_leadership = Campaigning{held->id, next()};
            // A key is fast only when this replica has round trips with a majority now: a holder
            // that could not gather support would give it up at once (a slow key keeps the
            // lease rules instead).
            emit(Campaign{held->id, std::get<Campaigning>(m_leadership).req, m_p.fast && peersReachable()});
        }
    } else if (m_leader.exists || heldToken()) {
        m_campaignAt.reset();
    }

    if (auto* h = std::get_if<HandingOver>(&m_leadership); h && !h->req) {
        if (h->step == HandingOver::Step::Mark) {
            h->req = next();
            emit(MarkHandover{h->token, h->lease, h->target, h->req});
        } else if (h->step == HandingOver::Step::Delete && due(h->retryAt)) {
            h->retryAt.reset();
            h->req = next();
            emit(DeleteLeader{h->token, h->req});
        }
    }

    const bool activeLeader = std::holds_alternative<Leading>(m_leadership) && m_role == Role::Active;
    if (activeLeader && !m_p.restartablePeers.empty() && !m_members && due(m_membersAt)) {
        m_membersAt = m_now + m_p.membersInterval;
        m_members = next();
        emit(ReadMembers{m_members});
    }
}

void Election::driveActions() {
    if (m_running) return;
    const bool leading = std::holds_alternative<Leading>(m_leadership);
    if (m_queued) {
        // ensure-active of a fast key waits until a majority supports its epoch.
        if (*m_queued == ActionKind::EnsureActive && !supportHolds()) return;
        auto k = *m_queued;
        m_queued.reset();
        m_retryPassive = false;
        startAction(k);
    } else if (m_retryPassive) {
        if (!m_nextEnsureAt || m_now >= *m_nextEnsureAt) {
            m_retryPassive = false;
            startAction(ActionKind::EnsurePassive);
        }
    } else if (!paused() && m_settled && m_nextEnsureAt && m_now >= *m_nextEnsureAt && !m_stopping) {
        if (leading && (m_role == Role::Active || m_role == Role::Promoting)) {
            if (supportHolds()) startAction(ActionKind::EnsureActive);
        }
        else if (m_role == Role::Passive)
            startAction(ActionKind::EnsurePassive);
    } else if (leading && m_role == Role::Active && !m_restartQueue.empty() && !paused() && !m_stopping) {
        std::string peer = m_restartQueue.front();
        m_restartQueue.pop_front();
        startAction(ActionKind::RestartPeer, peer);
    }
}

std::optional<TimePoint> Election::nextWakeup() const {
    std::optional<TimePoint> best;
    auto consider = [&](std::optional<TimePoint> t) {
        // Whatever was due at the last event and is still pending waits for another event
        // (a reply, a finished action), not for time: never ask to be woken in the past.
        if (t && *t > m_now && (!best || *t < *best)) best = t;
    };
    if (!m_started || m_exited) return best;
    const auto* held = std::get_if<LeaseHeld>(&m_lease);
    const auto* resuming = std::get_if<Resuming>(&m_lease);
    const bool leaseInFlight = std::holds_alternative<Granting>(m_lease) || (held && held->keepalive) || (resuming && resuming->req);
    if (held && !held->keepalive) consider(held->nextKeepalive);
    if (!leaseInFlight) consider(m_leaseRetryAt);
    if (heldToken()) consider(deadline());
    consider(m_readRetryAt);
    consider(m_campaignAt);
    if (!m_running) consider(m_nextEnsureAt);
    if (auto* h = std::get_if<HandingOver>(&m_leadership)) consider(h->retryAt);
    if (!m_settled) consider(m_startDeadline);
    consider(m_noCampaignUntil);
    consider(m_deferUntil);
    if (std::holds_alternative<Leading>(m_leadership) && m_role == Role::Active && !m_p.restartablePeers.empty() && !m_members)
        consider(m_membersAt);
    if (m_p.fast) {
        consider(m_nextHeartbeat);
        consider(m_supporter.nextExpiry());
    }
    return best;
}

// ---- fast mode ----------------------------------------------------------------------------

void Election::on(const PeerHeartbeat& e) {
    if (!m_p.fast || !isPeer(e.from)) {
        ++m_staleReplies;  // not a member: the transport should have dropped it
        return;
    }
    // A withdrawal counts for a takeover only from a replica other than the epoch's holder.
    if (e.withdrawn > 0 && e.withdrawn >= m_token) m_withdrawals[e.withdrawn][e.from] = true;
    const bool supported = e.epoch > 0 && e.epoch >= m_token && m_supporter.onHeartbeat(m_now, e.from, e.epoch);
    emit(SendAck{e.from, e.epoch, e.seq, supported});
}

void Election::on(const PeerAck& e) {
    if (!m_p.fast || !isPeer(e.from)) {
        ++m_staleReplies;
        return;
    }
    m_lastAck[e.from] = m_now;
    if (e.epoch == 0) return;
    if (!holdsFastKey() || e.epoch != m_holder.epoch()) {
        ++m_staleReplies;  // an ack of an epoch this replica no longer holds
        return;
    }
    m_holder.acked(e.from, e.epoch, e.seq, e.supported);
    if (m_serviceDeadline) {
        // Persisted for the PID 1 fence: any value up to the real deadline is safe (the fence
        // then stops the service earlier), so it is rewritten only every few heartbeats.
        auto d = deadline();
        if (d && *d >= *m_serviceDeadline + 4 * m_p.heartbeat) {
            m_serviceDeadline = d;
            persist();
        }
    }
}

void Election::expireSupport() {
    if (!m_p.fast || !m_started) return;
    for (std::int64_t epoch : m_supporter.expire(m_now)) {
        (void)epoch;
        m_heartbeatNow = true;  // tell the peers at once; every later heartbeat repeats it
    }
}

void Election::driveFast() {
    if (!m_p.fast) return;
    if (m_heartbeatNow || !m_nextHeartbeat || m_now >= *m_nextHeartbeat) {
        m_heartbeatNow = false;
        m_nextHeartbeat = m_now + m_p.heartbeat;
        const std::int64_t epoch = holdsFastKey() ? *heldToken() : 0;
        ++m_heartbeatSeq;
        if (epoch) {
            m_holder.prune(m_now);
            m_holder.sent(m_now, m_heartbeatSeq);
        }
        emit(SendHeartbeat{epoch, m_heartbeatSeq, m_supporter.latestWithdrawn()});
    }

    // Takeover: a majority (this replica included, the holder excluded) has withdrawn support
    // from the fast key's epoch, so its holder's support deadline has passed (it stopped).
    if (m_p.witness || m_takeover || m_stopping || paused() || m_readWanted || !m_leaderKnown) return;
    if (!m_leader.exists || !m_leader.fast || m_leader.holder == m_p.self) return;
    if (m_role != Role::Passive || !std::holds_alternative<NotLeader>(m_leadership)) return;
    if ((m_noCampaignUntil && m_now < *m_noCampaignUntil) || (m_deferUntil && m_now < *m_deferUntil)) return;
    if (m_p.startPassive && !m_seenOtherActive) return;
    auto* held = std::get_if<LeaseHeld>(&m_lease);
    if (!held || m_now >= held->lastAckSent + held->ttl - m_p.demoteMargin) return;  // could not campaign after
    const std::int64_t epoch = m_leader.createRevision;
    int count = m_supporter.withdrawn(epoch) ? 1 : 0;
    if (auto it = m_withdrawals.find(epoch); it != m_withdrawals.end())
        for (const auto& [peer, yes] : it->second)
            if (yes && peer != m_leader.holder && peer != m_p.self) ++count;
    if (count < m_holder.quorum()) return;
    m_takeover = Takeover{epoch, next()};
    emit(DeleteLeader{epoch, m_takeover->req});
}

}  // namespace prom::core

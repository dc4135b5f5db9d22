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

Election::Election(Params p) : m_p(std::move(p)) {}

std::optional<TimePoint> Election::deadline() const {
    if (!m_lease || m_ttl.count() == 0) return std::nullopt;
    return m_lastAckSent + m_ttl - m_p.demoteMargin;
}

RequestResult Election::canResign() const {
    return m_held && (m_role == Role::Active || m_role == Role::Promoting) ? RequestResult::Accepted : RequestResult::NotActive;
}

RequestResult Election::canSwitchover(const std::string& target, const std::vector<std::string>& replicas) const {
    if (!target.empty() && (target == m_p.self || std::find(replicas.begin(), replicas.end(), target) == replicas.end()))
        return RequestResult::InvalidArgs;
    return canResign();
}

std::vector<Effect> Election::handle(TimePoint now, const Event& event) {
    m_out.clear();
    m_now = now;
    onEvent(now, event);
    // The deadline is checked after every event and before anything is driven, so that a late
    // reply (a keepalive ack or a campaign win arriving after the deadline) cannot extend it.
    checkDeadline(now);
    evaluateOwnership(now);
    drive(now);
    return std::move(m_out);
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
        // Fencing tokens seen by this replica never go backwards (a stale member may answer).
        m_token = std::max(m_token, key.createRevision);
        if (key.holder != m_p.self) m_seenOtherActive = true;
    }
    if (changed) emit(PublishLeader{key.exists ? key.holder : "", m_token});
}

void Election::queueAction(ActionKind k) {
    if (m_running == k) {
        // Already running, but it may have started before the state changed: run it once more.
        m_queued = k;
        return;
    }
    if (m_running && *m_running != k) emit(CancelAction{});
    m_queued = k;
}

void Election::startAction(ActionKind k, const std::string& peer) {
    m_running = k;
    if (k != ActionKind::RestartPeer) m_nextEnsureAt.reset();
    emit(RunAction{k, m_role, m_leader.exists ? m_leader.holder : "", m_token, peer});
}

void Election::onMembers(TimePoint now, const MembersRead& m) {
    m_membersInFlight = false;
    if (!m_held || m_role != Role::Active) return;
    for (const auto& peer : m_p.restartablePeers) {
        bool present = std::find(m.present.begin(), m.present.end(), peer) != m.present.end();
        if (present) {
            m_missingSince.erase(peer);
            continue;
        }
        auto [it, first] = m_missingSince.emplace(peer, now);
        if (first || now - it->second < m_p.requestedTtl) continue;
        auto next = m_nextRestart.find(peer);
        if (next != m_nextRestart.end() && now < next->second) continue;
        // Rate-limited: one restart per peer per backoff, never piling up (PROM started a new
        // thread per dead peer on every loop).
        m_nextRestart[peer] = now + m_p.restartPeerBackoff;
        if (std::find(m_restartQueue.begin(), m_restartQueue.end(), peer) == m_restartQueue.end())
            m_restartQueue.push_back(peer);
    }
}

void Election::loseLeadership(TimePoint, const std::string& reason, bool abandonLease) {
    m_held = 0;
    m_resignPending = false;
    m_readyToDelete = false;
    m_failures = 0;
    m_restartQueue.clear();
    m_missingSince.clear();
    // What we knew of the leader key came before we lost it; only a fresh read may say that it
    // is ours again (a store whose session survives, like MUSIC's queue place, would otherwise
    // match the stale knowledge at once).
    m_leaderKnown = false;
    m_readWanted = true;
    if (m_role == Role::Active || m_role == Role::Promoting || m_role == Role::Demoting || m_role == Role::Stopping) {
        setRole(m_stopping ? Role::Stopping : Role::Demoting, reason);
        queueAction(ActionKind::EnsurePassive);
    }
    if (abandonLease && m_lease) {
        // The lease may still live in the store (we only lost contact); revoking it frees the
        // leader key at once when the store is reachable, else it expires on its own.
        emit(RevokeLease{m_lease});
        emit(PersistLease{0});
        m_lease = 0;
        m_ttl = Duration{0};
        m_leaseRequestInFlight = false;
    }
}

void Election::checkDeadline(TimePoint now) {
    if (!m_held) return;
    auto d = deadline();
    if (!d || now >= *d)
        loseLeadership(now, "lease deadline passed: no keepalive acknowledged for TTL - margin (store unreachable?)", true);
}

void Election::evaluateOwnership(TimePoint now) {
    if (m_held || !m_leaderKnown || !m_leader.exists || !m_lease) return;
    if (m_leader.holder != m_p.self || m_leader.lease != m_lease || m_resignPending || m_stopping) return;
    // The leader key is ours, on our live lease: either prom restarted while active (resume
    // without failover) or a campaign whose reply was lost did commit.
    m_held = m_leader.createRevision;
    m_token = std::max(m_token, m_held);
    if (!m_settled) {
        m_settled = true;
        setRole(Role::Active, "resumed: this replica still holds the leader key with token " + std::to_string(m_held));
        m_nextEnsureAt = now;
    } else {
        setRole(Role::Promoting, "holds the leader key with token " + std::to_string(m_held));
        queueAction(ActionKind::EnsureActive);
    }
}

void Election::onActionFinished(TimePoint now, const ActionFinished& f) {
    m_running.reset();
    const bool ok = f.outcome == ActionOutcome::AlreadyInMode || f.outcome == ActionOutcome::Switched;
    if (f.outcome == ActionOutcome::Cancelled) return;
    if (f.kind == ActionKind::RestartPeer) {
        if (!ok) emit(PublishError{"restart-prom failed: " + f.detail});
        return;
    }
    if (f.kind == ActionKind::EnsureActive) {
        if (!m_held) return;  // leadership was lost while it ran; ensure-passive is queued
        if (ok) {
            m_failures = 0;
            if (m_role == Role::Promoting) setRole(Role::Active, "ensure-active succeeded");
            scheduleEnsure(now + m_p.monitorInterval);
            return;
        }
        ++m_failures;
        emit(PublishError{"ensure-active failed (" + std::to_string(m_failures) + "/" + std::to_string(m_p.retryAttempts) +
                          "): " + f.detail});
        if (m_failures >= m_p.retryAttempts) {
            m_failures = 0;
            m_resignPending = true;
            setRole(Role::Demoting, "ensure-active failed " + std::to_string(m_p.retryAttempts) + " times: resigning");
            queueAction(ActionKind::EnsurePassive);
        } else {
            scheduleEnsure(now + m_p.retryBackoff);
        }
        return;
    }
    // ensure-passive
    if (!ok) {
        ++m_passiveFailures;
        emit(PublishError{"ensure-passive failed (" + std::to_string(m_passiveFailures) + "/" +
                          std::to_string(m_p.retryAttempts) + "): " + f.detail});
        if (m_passiveFailures < m_p.retryAttempts && m_role != Role::Passive) {
            // Retry before handing over: a replica that is still active must not get company.
            scheduleEnsure(now + m_p.retryBackoff);
            m_retryPassiveNow = true;
            return;
        }
    }
    m_passiveFailures = 0;
    if (m_resignPending) m_readyToDelete = true;
    if (m_role == Role::Starting || m_role == Role::Demoting) setRole(Role::Passive, "ensure-passive finished");
    scheduleEnsure(now + (ok ? m_p.monitorInterval : m_p.retryBackoff));
}

void Election::onEvent(TimePoint now, const Event& event) {
    std::visit(
        [&](const auto& e) {
            using T = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<T, Start>) {
                m_started = true;
                m_startDeadline = now + (m_p.requestedTtl - m_p.demoteMargin);
                if (e.persistedLease) {
                    m_resumeLease = e.persistedLease;
                    m_leaseRequestInFlight = true;
                    emit(KeepAlive{e.persistedLease});
                }
            } else if constexpr (std::is_same_v<T, LeaseGranted>) {
                m_leaseRequestInFlight = false;
                m_leaseRetryAt.reset();
                if (m_stopping) {
                    emit(RevokeLease{e.lease});
                    return;
                }
                m_lease = e.lease;
                m_ttl = e.ttl;
                m_lastAckSent = e.sentAt;
                m_nextKeepalive = e.sentAt + e.ttl / 3;
                emit(PersistLease{e.lease});
                emit(PutMember{e.lease});
            } else if constexpr (std::is_same_v<T, KeepaliveAcked>) {
                if (e.lease != m_lease && e.lease != m_resumeLease) return;
                m_leaseRequestInFlight = false;
                m_leaseRetryAt.reset();
                if (e.lease == m_resumeLease) {
                    m_resumeLease = 0;
                    m_lease = e.lease;
                }
                m_ttl = e.ttl;
                m_lastAckSent = std::max(m_lastAckSent, e.sentAt);
                m_nextKeepalive = e.sentAt + e.ttl / 3;
            } else if constexpr (std::is_same_v<T, LeaseLost>) {
                if (e.lease == m_resumeLease) {
                    m_resumeLease = 0;
                    m_leaseRequestInFlight = false;
                    emit(PersistLease{0});
                } else if (e.lease == m_lease) {
                    m_leaseRequestInFlight = false;
                    if (m_held) loseLeadership(now, "the lease expired in the store", false);
                    m_lease = 0;
                    m_ttl = Duration{0};
                    emit(PersistLease{0});
                }
            } else if constexpr (std::is_same_v<T, LeaseRequestFailed>) {
                m_leaseRequestInFlight = false;
                Duration retry = m_ttl.count() ? std::min(m_p.storeRetry, m_ttl / 6) : m_p.storeRetry;
                m_leaseRetryAt = now + retry;
            } else if constexpr (std::is_same_v<T, LeaderRead>) {
                m_readInFlight = false;
                m_readWanted = false;
                m_readRetryAt.reset();
                m_revision = std::max(m_revision, e.revision);
                if (m_held && (!e.key.exists || e.key.createRevision != m_held))
                    loseLeadership(now, "the leader key is no longer ours", false);
                learnLeader(e.key);
                if (!m_watchOpen) {
                    m_watchOpen = true;
                    emit(Watch{e.revision + 1});
                }
                // Not the holder (or cannot be: no lease, and no persisted lease to check).
                bool maybeOurs = e.key.exists && e.key.holder == m_p.self &&
                                 (e.key.lease == m_lease || e.key.lease == m_resumeLease);
                if (!m_settled && !maybeOurs) {
                    m_settled = true;
                    queueAction(ActionKind::EnsurePassive);
                }
            } else if constexpr (std::is_same_v<T, CampaignResult>) {
                m_campaignInFlight = false;
                m_handoverToMe = false;
                m_revision = std::max(m_revision, e.revision);
                learnLeader(e.key);
                if (e.won && m_held == e.key.createRevision) {
                    // already learnt from the watch, which may deliver our put before the reply
                } else if (e.won && !m_stopping) {
                    m_held = e.key.createRevision;
                    m_failures = 0;
                    setRole(Role::Promoting, "won the election with token " + std::to_string(m_held));
                    queueAction(ActionKind::EnsureActive);
                } else if (e.won) {
                    m_held = e.key.createRevision;
                    m_resignPending = true;
                    m_readyToDelete = true;
                }
                if (!m_watchOpen) {
                    m_watchOpen = true;
                    emit(Watch{e.revision + 1});
                }
            } else if constexpr (std::is_same_v<T, StoreRequestFailed>) {
                if (e.what == StoreRequestFailed::What::Read) {
                    m_readInFlight = false;
                    m_readRetryAt = now + m_p.storeRetry;
                } else if (e.what == StoreRequestFailed::What::Campaign) {
                    m_campaignInFlight = false;
                    m_readWanted = true;
                    m_readRetryAt = now + m_p.storeRetry;
                } else if (e.what == StoreRequestFailed::What::Members) {
                    m_membersInFlight = false;
                } else if (e.what == StoreRequestFailed::What::Handover) {
                    // Best effort: without the mark, the replicas campaign by priority.
                    m_markInFlight = false;
                    m_handoverMarked = true;
                } else {
                    m_deleteInFlight = false;
                    m_deleteRetryAt = now + m_p.storeRetry;
                }
            } else if constexpr (std::is_same_v<T, WatchEvent>) {
                m_revision = std::max(m_revision, e.revision);
                if (e.key.exists) m_handoverToMe = false;
                if (!e.key.exists && m_leader.exists && !m_leader.handoverTo.empty() && !m_held) {
                    // The deleted key named a successor: it campaigns at once, the others give
                    // it one TTL before they campaign too (in case it is dead).
                    if (m_leader.handoverTo == m_p.self) {
                        m_handoverToMe = true;
                        m_noCampaignUntil.reset();
                    } else {
                        m_noCampaignUntil = now + m_p.requestedTtl;
                    }
                }
                if (m_held) {
                    if (!e.key.exists && m_deleteInFlight) {
                        m_held = 0;  // our own resign: ResignDone finishes it
                    } else if (!e.key.exists) {
                        loseLeadership(now, "the leader key was deleted", false);
                    } else if (e.key.createRevision != m_held) {
                        loseLeadership(now, "another replica holds the leader key", false);
                    }
                }
                learnLeader(e.key);
            } else if constexpr (std::is_same_v<T, WatchBroken>) {
                m_watchOpen = false;
                m_readWanted = true;
            } else if constexpr (std::is_same_v<T, ActionFinished>) {
                onActionFinished(now, e);
            } else if constexpr (std::is_same_v<T, ResignDone>) {
                m_deleteInFlight = false;
                m_deleteRetryAt.reset();
                m_held = 0;
                m_resignPending = false;
                m_readyToDelete = false;
                m_handoverTo.clear();
                m_handoverMarked = false;
                m_noCampaignUntil = now + m_p.resignCooldown;
                // The key is gone (or was no longer ours): the watch may report the delete
                // after this reply, and must not find "our" key still there meanwhile.
                if (m_leader.exists && m_leader.holder == m_p.self) learnLeader(LeaderKey{});
            } else if constexpr (std::is_same_v<T, MembersRead>) {
                onMembers(now, e);
            } else if constexpr (std::is_same_v<T, Tick>) {
            } else if constexpr (std::is_same_v<T, ResignRequest>) {
                if (canResign() != RequestResult::Accepted) return;
                m_resignPending = true;
                setRole(Role::Demoting, "resign requested");
                queueAction(ActionKind::EnsurePassive);
            } else if constexpr (std::is_same_v<T, SwitchoverRequest>) {
                if (canResign() != RequestResult::Accepted) return;
                m_resignPending = true;
                m_handoverTo = e.target;
                m_handoverMarked = false;
                setRole(Role::Demoting, e.target.empty() ? "switchover requested" : "switchover to " + e.target + " requested");
                queueAction(ActionKind::EnsurePassive);
            } else if constexpr (std::is_same_v<T, HandoverMarked>) {
                m_markInFlight = false;
                m_handoverMarked = true;
            } else if constexpr (std::is_same_v<T, PauseRequest>) {
                m_paused = e.pause;
                m_campaignAt.reset();
            } else if constexpr (std::is_same_v<T, StopRequest>) {
                if (m_stopping) return;
                m_stopping = true;
                m_campaignAt.reset();
                if (m_held) {
                    m_resignPending = true;
                    setRole(Role::Stopping, "stopping: handing over");
                    queueAction(ActionKind::EnsurePassive);
                } else {
                    setRole(Role::Stopping, "stopping");
                    if (m_running) emit(CancelAction{});
                    m_queued.reset();
                }
            }
        },
        event);
}

void Election::drive(TimePoint now) {
    if (!m_started || m_exited) return;
    auto due = [now](const std::optional<TimePoint>& t) { return !t || now >= *t; };

    if (!m_settled && m_startDeadline && now >= *m_startDeadline && !m_held) {
        // No answer from the store in time to prove this replica still holds the leader key.
        m_settled = true;
        emit(PublishError{"store did not answer at start: starting passive"});
        queueAction(ActionKind::EnsurePassive);
    }

    // lease
    if (!m_leaseRequestInFlight && due(m_leaseRetryAt) && !m_stopping) {
        m_leaseRetryAt.reset();
        if (!m_lease && !m_resumeLease) {
            m_leaseRequestInFlight = true;
            emit(GrantLease{m_p.requestedTtl});
        } else if (m_lease && now >= m_nextKeepalive) {
            m_leaseRequestInFlight = true;
            emit(KeepAlive{m_lease});
        } else if (m_resumeLease && !m_lease) {
            m_leaseRequestInFlight = true;
            emit(KeepAlive{m_resumeLease});
        }
    }

    // leader key
    if (m_readWanted && !m_readInFlight && due(m_readRetryAt)) {
        m_readInFlight = true;
        m_readRetryAt.reset();
        emit(ReadLeader{});
    }

    const bool leaseFresh = m_lease && now < m_lastAckSent + m_ttl - m_p.demoteMargin;
    const bool mayCampaign = m_role == Role::Passive && !m_held && leaseFresh && m_leaderKnown && !m_leader.exists &&
                             !m_readWanted && !m_campaignInFlight && !m_paused && !m_stopping && !m_resignPending &&
                             due(m_noCampaignUntil) && (!m_p.startPassive || m_seenOtherActive);
    if (mayCampaign) {
        if (!m_campaignAt) m_campaignAt = now + (m_handoverToMe ? Duration{0} : m_p.campaignDelay);
        if (now >= *m_campaignAt) {
            m_campaignAt.reset();
            m_campaignInFlight = true;
            emit(Campaign{m_lease});
        }
    } else if (m_leader.exists || m_held) {
        m_campaignAt.reset();
    }

    if (m_readyToDelete && m_held && !m_handoverTo.empty() && !m_handoverMarked) {
        if (!m_markInFlight) {
            m_markInFlight = true;
            emit(MarkHandover{m_held, m_lease, m_handoverTo});
        }
    } else if (m_readyToDelete && m_held && !m_deleteInFlight && due(m_deleteRetryAt)) {
        m_deleteInFlight = true;
        m_deleteRetryAt.reset();
        emit(DeleteLeader{m_held});
    }

    const bool activeHolder = m_held && m_role == Role::Active;
    if (activeHolder && !m_p.restartablePeers.empty() && !m_membersInFlight && due(m_membersAt)) {
        m_membersInFlight = true;
        m_membersAt = now + m_p.membersInterval;
        emit(ReadMembers{});
    }

    // actions: one at a time, in order
    if (!m_running) {
        if (m_queued) {
            auto k = *m_queued;
            m_queued.reset();
            m_retryPassiveNow = false;
            startAction(k);
        } else if (m_retryPassiveNow) {
            if (due(m_nextEnsureAt)) {
                m_retryPassiveNow = false;
                startAction(ActionKind::EnsurePassive);
            }
        } else if (!m_paused && m_settled && m_nextEnsureAt && now >= *m_nextEnsureAt && !m_stopping) {
            if (m_held && (m_role == Role::Active || m_role == Role::Promoting))
                startAction(ActionKind::EnsureActive);
            else if (m_role == Role::Passive)
                startAction(ActionKind::EnsurePassive);
        } else if (activeHolder && !m_restartQueue.empty() && !m_paused && !m_stopping) {
            std::string peer = m_restartQueue.front();
            m_restartQueue.pop_front();
            startAction(ActionKind::RestartPeer, peer);
        }
    }

    if (m_stopping && !m_held && !m_running && !m_queued && !m_retryPassiveNow) {
        m_exited = true;
        if (m_lease) emit(RevokeLease{m_lease});
        emit(PersistLease{0});
        emit(Exit{});
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
    if (m_lease && !m_leaseRequestInFlight) consider(m_nextKeepalive);
    if (!m_leaseRequestInFlight) consider(m_leaseRetryAt);
    if (m_held) consider(deadline());
    consider(m_readRetryAt);
    consider(m_campaignAt);
    if (!m_running) consider(m_nextEnsureAt);
    consider(m_deleteRetryAt);
    if (!m_settled) consider(m_startDeadline);
    consider(m_noCampaignUntil);
    if (m_held && m_role == Role::Active && !m_p.restartablePeers.empty() && !m_membersInFlight) consider(m_membersAt);
    return best;
}

}  // namespace prom::core

#include "daemon/store_driver.hpp"

#include "common/log.hpp"

namespace prom::daemon {

namespace {

/** Names the request a reply answers (every reply event has a req field). */
core::Event withRequest(core::Event e, core::RequestId id) {
    std::visit(
        [id](auto& ev) {
            if constexpr (requires { ev.req; }) ev.req = id;
        },
        e);
    return e;
}

}  // namespace

StoreDriver::StoreDriver(store::Store& store, std::string backend, Feed feed, Now now, HealthChanged healthChanged)
    : m_store(store),
      m_backend(std::move(backend)),
      m_feed(std::move(feed)),
      m_now(std::move(now)),
      m_healthChanged(std::move(healthChanged)) {}

void StoreDriver::logFailure(const std::string& message) {
    TimePoint now = m_now();
    ++m_outageFailures;
    if (m_outageFailures == 1) {
        m_outageSince = now;
        m_lastLogged = now;
        log::warning(message);
        return;
    }
    ++m_suppressed;
    if (now - m_lastLogged < kLogEvery) return;
    log::warning(message + " (" + std::to_string(m_suppressed) + " more store failures in the last " +
                 std::to_string((now - m_lastLogged).count() / 1000) + " s)");
    m_suppressed = 0;
    m_lastLogged = now;
}

void StoreDriver::record(bool ok, const std::string& error) {
    if (ok && m_outageFailures > 0) {
        log::notice(m_backend + " answers again after " + std::to_string((m_now() - m_outageSince).count()) + " ms and " +
                    std::to_string(m_outageFailures) + " failed requests");
        m_outageFailures = 0;
        m_suppressed = 0;
    }
    m_lastReply = m_now();
    bool changed = ok != m_healthy || (!ok && error != m_lastError);
    m_healthy = ok;
    // Recovery clears the error: LastError says why the store is unhealthy, not what once was.
    m_lastError = ok ? "" : error;
    if (changed && m_healthChanged) m_healthChanged(m_healthy, m_lastError);
}

template <class T>
std::function<void(Result<T>)> StoreDriver::answer(std::string what, bool countsForHealth,
                                                   std::function<core::Event(const Error&)> onError,
                                                   std::function<core::Event(T&)> onValue) {
    return [this, what = std::move(what), countsForHealth, onError = std::move(onError), onValue = std::move(onValue),
            sent = m_now()](Result<T> r) {
        if (countsForHealth) {
            record(r.ok(), r ? "" : r.error().message);
            if (m_latency) m_latency(m_now() - sent);
        }
        if (!r) {
            logFailure(what + " failed: " + r.error().message);
            m_feed(onError(r.error()));
            return;
        }
        m_feed(onValue(r.value()));
    };
}

bool StoreDriver::apply(const core::Effect& effect) {
    using SRF = core::StoreRequestFailed;
    auto failed = [](SRF::What what, core::RequestId id) {
        return [what, id](const Error& e) -> core::Event { return SRF{what, e.message, id}; };
    };
    if (auto* g = std::get_if<core::GrantLease>(&effect)) {
        TimePoint sent = m_now();
        core::RequestId id = g->id;
        m_store.grantLease(g->ttl, answer<store::Lease>(
                                       "lease grant", true,
                                       [id](const Error& e) -> core::Event { return core::LeaseRequestFailed{0, e.message, id}; },
                                       [this, sent, id](store::Lease& l) -> core::Event {
                                           log::info("lease " + std::to_string(l.id) + " granted, TTL " +
                                                     std::to_string(l.ttl.count() / 1000) + " s");
                                           return core::LeaseGranted{l.id, l.ttl, sent, id};
                                       }));
    } else if (auto* k = std::get_if<core::KeepAlive>(&effect)) {
        TimePoint sent = m_now();
        core::RequestId id = k->id;
        std::int64_t lease = k->lease;
        m_store.keepAlive(lease, answer<std::optional<Duration>>(
                                     "keepalive", true,
                                     [lease, id](const Error& e) -> core::Event { return core::LeaseRequestFailed{lease, e.message, id}; },
                                     [this, lease, sent, id](std::optional<Duration>& ttl) -> core::Event {
                                         if (!ttl) {
                                             log::warning("lease " + std::to_string(lease) + " no longer exists in " + m_backend);
                                             return core::LeaseLost{lease, id};
                                         }
                                         return core::KeepaliveAcked{lease, *ttl, sent, id};
                                     }));
    } else if (auto* v = std::get_if<core::RevokeLease>(&effect)) {
        std::int64_t lease = v->lease;
        m_store.revokeLease(lease, [lease](Result<Ok> r) {
            if (!r) log::debug("revoking lease " + std::to_string(lease) + " failed: " + r.error().message);
        });
    } else if (auto* rl = std::get_if<core::ReadLeader>(&effect)) {
        core::RequestId id = rl->id;
        m_store.readLeader(answer<core::LeaderRead>("reading the leader key", true, failed(SRF::What::Read, id),
                                                    [id](core::LeaderRead& v) { return withRequest(v, id); }));
    } else if (auto* c = std::get_if<core::Campaign>(&effect)) {
        core::RequestId id = c->id;
        auto reply = answer<core::CampaignResult>("campaign", true, failed(SRF::What::Campaign, id),
                                                  [id](core::CampaignResult& v) { return withRequest(v, id); });
        // Fast mode: the key says whether withdrawals may take it over (mode=fast) or not.
        m_store.campaign(c->lease, c->fast, std::move(reply));
    } else if (auto* w = std::get_if<core::Watch>(&effect)) {
        core::RequestId id = w->id;
        m_store.watchLeader(
            w->fromRevision, [this, id](const core::WatchEvent& ev) { m_feed(withRequest(ev, id)); },
            [this, id](const std::string& why) {
                log::info("leader watch closed (" + why + "); re-reading");
                m_feed(core::WatchBroken{why, id});
            });
    } else if (auto* d = std::get_if<core::DeleteLeader>(&effect)) {
        core::RequestId id = d->id;
        m_store.deleteLeader(d->createRevision, answer<Ok>("deleting the leader key", false, failed(SRF::What::Resign, id),
                                                            [id](Ok&) -> core::Event { return core::ResignDone{id}; }));
    } else if (auto* m = std::get_if<core::MarkHandover>(&effect)) {
        core::RequestId id = m->id;
        m_store.markHandover(m->createRevision, m->lease, m->target,
                             answer<Ok>("naming the switchover target in the leader key", false, failed(SRF::What::Handover, id),
                                        [id](Ok&) -> core::Event { return core::HandoverMarked{id}; }));
    } else if (auto* p = std::get_if<core::PutMember>(&effect)) {
        m_memberLease = p->lease;
        m_putMember.reset();
        putMember();
    } else if (auto* rm = std::get_if<core::ReadMembers>(&effect)) {
        core::RequestId id = rm->id;
        m_store.readMembers(answer<std::vector<store::MemberInfo>>(
            "reading the member keys", false, failed(SRF::What::Members, id),
            [id](std::vector<store::MemberInfo>& present) -> core::Event {
                std::vector<std::string> ids;
                for (const auto& m : present) ids.push_back(m.id);
                return core::MembersRead{ids, id};
            }));
    } else {
        return false;
    }
    return true;
}

void StoreDriver::memberChanged() {
    if (!m_memberLease || !m_describe) return;
    if (m_memberPutting) {
        m_memberDirty = true;
        return;
    }
    // After a failed write, the next try waits a little (this runs after every event batch).
    if (m_putMember == m_describe() || m_now() < m_memberRetryAt) return;
    putMember();
}

void StoreDriver::putMember() {
    if (!m_describe) return;
    // One put in flight; a change meanwhile is written when it answers (the last one wins).
    if (m_memberPutting) {
        m_memberDirty = true;
        return;
    }
    store::MemberInfo info = m_describe();
    m_memberPutting = true;
    m_memberDirty = false;
    const std::int64_t lease = m_memberLease;
    m_store.putMember(lease, info, [this, info, lease](Result<Ok> r) {
        m_memberPutting = false;
        if (r) {
            m_putMember = info;
        } else {
            m_memberRetryAt = m_now() + kMemberRetry;
            if (lease == m_memberLease) log::warning("writing the member key failed: " + r.error().message);
        }
        if (m_memberDirty) memberChanged();
    });
}

}  // namespace prom::daemon

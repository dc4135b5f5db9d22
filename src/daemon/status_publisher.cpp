#include "daemon/status_publisher.hpp"

#include "common/log.hpp"
#include "common/text.hpp"

namespace prom::daemon {

StatusPublisher::StatusPublisher(StatusSinks sinks) : m_sinks(std::move(sinks)) {}

void StatusPublisher::push() {
    if (!m_sinks.properties || (m_everPushed && m_status == m_pushed)) return;
    m_everPushed = true;
    m_pushed = m_status;
    m_sinks.properties(m_status);
}

void StatusPublisher::setError(const std::string& message) {
    std::string clean = text::sanitize(message, 300);
    // An operator asks "since when": the same text repeated through an outage keeps the time it
    // first appeared, so only a new text (or clearing) moves LastErrorUSec.
    if (clean == m_status.lastError) return;
    m_status.lastError = std::move(clean);
    m_status.lastErrorUSec = m_status.lastError.empty() || !m_sinks.realtimeUsec ? 0 : m_sinks.realtimeUsec();
}

void StatusPublisher::storeHealth(bool healthy, const std::string& error) {
    const bool sameOutage = !healthy && !m_status.storeHealthy && m_storeError;
    m_status.storeHealthy = healthy;
    if (!healthy) {
        // One outage is one error: its requests fail in turn, each naming itself ("etcd kv/range
        // failed ...", "etcd lease/keepalive failed ...", twice a second with etcd down), and a
        // time that followed the text would make every outage look a second old. The text shows
        // the latest failure, the time when the store stopped answering.
        const std::uint64_t outageSince = m_status.lastErrorUSec;
        setError(error);
        if (sameOutage && outageSince != 0 && !m_status.lastError.empty()) m_status.lastErrorUSec = outageSince;
        m_storeError = true;
    } else if (m_storeError) {
        setError("");
        m_storeError = false;
    }
    push();
}

void StatusPublisher::refresh(const core::Election& e) {
    m_status.role = core::toString(e.role());
    // The last line of defence before D-Bus (which rejects invalid UTF-8) and terminals.
    m_status.leader = text::sanitize(e.leader());
    m_status.fencingToken = static_cast<std::uint64_t>(e.token());
    m_status.paused = e.paused();
    m_status.mode = e.fastMode() ? "fast" : "lease";
    m_status.peerSupport = e.peerSupport();
    push();
}

bool StatusPublisher::apply(const core::Effect& effect) {
    if (auto* e = std::get_if<core::PublishRole>(&effect)) {
        std::string token = std::to_string(e->token);
        std::string oldRole = core::toString(m_role);
        std::string leader = e->leader.empty() ? "none" : e->leader;
        log::setContext("PROM_ROLE", core::toString(e->role));
        log::write(log::Level::Notice,
                   "role " + oldRole + " -> " + core::toString(e->role) + " (token " + token + ", leader " + leader + "): " + e->reason,
                   {{"MESSAGE_ID", log::kRoleChangedMessageId}, {"PROM_FENCING_TOKEN", token}, {"PROM_OLD_ROLE", oldRole}});
        m_role = e->role;
        m_status.role = core::toString(e->role);
        m_status.fencingToken = static_cast<std::uint64_t>(e->token);
        if (m_sinks.realtimeUsec) m_status.lastTransitionUSec = m_sinks.realtimeUsec();
        // Properties first, then the signal: a client reacting to RoleChanged reads the new state.
        push();
        if (m_sinks.roleChanged) m_sinks.roleChanged(oldRole, core::toString(e->role), static_cast<std::uint64_t>(e->token));
        if (m_sinks.notify) {
            m_sinks.notify("STATUS=" + std::string(core::toString(e->role)) + ", leader " + leader + ", token " + token);
            if (!m_ready && (e->role == core::Role::Passive || e->role == core::Role::Active)) {
                m_ready = true;
                m_sinks.notify("READY=1");
            }
        }
        return true;
    }
    if (auto* e = std::get_if<core::PublishLeader>(&effect)) {
        log::info("leader is " + (e->leader.empty() ? std::string("none") : e->leader) + " (token " + std::to_string(e->token) + ")");
        return true;
    }
    if (auto* e = std::get_if<core::PublishError>(&effect)) {
        setError(e->message);
        log::warning(m_status.lastError);
        m_storeError = false;
        push();
        return true;
    }
    return false;
}

}  // namespace prom::daemon

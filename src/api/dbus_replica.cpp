#include "api/dbus_replica.hpp"

#include <cstdio>

#include "common/log.hpp"

namespace prom::api {
namespace {

/** A caller-supplied string made safe for one log line: printable ASCII, the rest \xNN, at
 *  most 128 bytes of it. */
std::string escaped(const std::string& s) {
    constexpr std::size_t kMax = 128;
    std::string out;
    for (unsigned char c : s.substr(0, kMax)) {
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > kMax) out += "...";
    return out;
}

}  // namespace

DbusReplica::DbusReplica(sd::BusConnection& bus, std::string replicaId, std::string appName, ReplicaHandlers handlers)
    : AdaptorInterfaces(bus.connection(), kObjectPath),
      m_id(std::move(replicaId)),
      m_app(std::move(appName)),
      m_handlers(std::move(handlers)) {
    registerAdaptor();
    bus.beforePoll([this] { flush(); });
}

DbusReplica::~DbusReplica() { unregisterAdaptor(); }

void DbusReplica::update(const ReplicaState& s) {
    if (s.role != m_state.role) m_dirty.insert("Role");
    if (s.leader != m_state.leader) m_dirty.insert("Leader");
    if (s.fencingToken != m_state.fencingToken) m_dirty.insert("FencingToken");
    if (s.storeHealthy != m_state.storeHealthy) m_dirty.insert("StoreHealthy");
    if (s.paused != m_state.paused) m_dirty.insert("Paused");
    if (s.lastTransitionUSec != m_state.lastTransitionUSec) m_dirty.insert("LastTransitionUSec");
    if (s.lastError != m_state.lastError) m_dirty.insert("LastError");
    if (s.lastErrorUSec != m_state.lastErrorUSec) m_dirty.insert("LastErrorUSec");
    if (s.peerSupport != m_state.peerSupport) m_dirty.insert("PeerSupport");
    m_state = s;
}

void DbusReplica::roleChanged(const std::string& oldRole, const std::string& newRole, std::uint64_t token) {
    flush();  // properties first, so that a client reacting to the signal reads the new values
    emitRoleChanged(oldRole, newRole, token);
}

void DbusReplica::flush() {
    if (m_dirty.empty()) return;
    std::vector<std::string> names(m_dirty.begin(), m_dirty.end());
    m_dirty.clear();
    getObject().emitPropertiesChangedSignal(INTERFACE_NAME, names);
}

void DbusReplica::answer(const char* method, const std::function<Verdict()>& f) {
    // Every method changes who is active: the journal says who asked (uid and pid from the bus
    // daemon, which the caller cannot forge), before and after, so that an unexpected
    // switchover can be traced to a process.
    std::string who = "an unknown caller";
    std::map<std::string, std::string> fields;
    try {
        if (const sdbus::Message* m = getObject().getCurrentlyProcessedMessage()) {
            uid_t uid = m->getCredsUid();
            pid_t pid = m->getCredsPid();
            who = "uid " + std::to_string(uid) + " pid " + std::to_string(pid) + " (" + m->getSender() + ")";
            fields = {{"PROM_CALLER_UID", std::to_string(uid)},
                      {"PROM_CALLER_PID", std::to_string(pid)},
                      {"PROM_CALLER_BUS_NAME", m->getSender()}};
        }
    } catch (const sdbus::Error& e) {
        who = "a caller whose credentials are unknown (" + e.getMessage() + ")";
    }
    log::write(log::Level::Notice, std::string("D-Bus ") + method + " called by " + who, fields);

    // sdbus-c++ 1.2 turns only sdbus::Error into an error reply; anything else would end the
    // process from inside the bus dispatch, so every handler catches everything itself.
    Verdict v;
    try {
        v = f();
    } catch (const std::exception& e) {
        log::error(std::string("D-Bus ") + method + " by " + who + ": " + e.what());
        throw sdbus::Error("org.freedesktop.DBus.Error.Failed", e.what());
    }
    if (!v.errorName.empty()) {
        log::write(log::Level::Notice, std::string("D-Bus ") + method + " by " + who + " refused: " + v.errorName,
                   fields);
        throw sdbus::Error(v.errorName, v.message);
    }
}

void DbusReplica::Switchover(const std::string& target) {
    answer(("Switchover(\"" + escaped(target) + "\")").c_str(), [&] { return m_handlers.switchover(target); });
}
void DbusReplica::Resign() {
    answer("Resign", [&] { return m_handlers.resign(); });
}
void DbusReplica::Pause() {
    answer("Pause", [&] { return m_handlers.pause(true); });
}
void DbusReplica::Resume() {
    answer("Resume", [&] { return m_handlers.pause(false); });
}

}  // namespace prom::api

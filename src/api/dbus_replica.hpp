#pragma once
// org.prom.Prom1.Replica on /org/prom/Prom1 (dbus/org.prom.Prom1.xml, org.prom.Prom1(5)).
// Properties are observations of the daemon; changes made during one loop turn go out as one
// PropertiesChanged. Methods validate, then hand the request to the daemon.
#include <functional>
#include <set>

#include "api/bus.hpp"
#include "sd/bus.hpp"
#include "api/replica_state.hpp"
#include "prom/org_prom_Prom1_adaptor.h"

namespace prom::api {

/** Answers of the daemon to a method call: "" = accepted, else a D-Bus error name. */
struct Verdict {
    std::string errorName;
    std::string message;
};

struct ReplicaHandlers {
    std::function<Verdict(const std::string& target)> switchover;
    std::function<Verdict()> resign;
    std::function<Verdict(bool pause)> pause;
};

class DbusReplica : public sdbus::AdaptorInterfaces<org::prom::Prom1::Replica_adaptor> {
public:
    DbusReplica(sd::BusConnection& bus, std::string replicaId, std::string appName, ReplicaHandlers handlers);
    ~DbusReplica();

    /** Updates the properties; changed ones are announced before the next poll. */
    void update(const ReplicaState& s);
    void roleChanged(const std::string& oldRole, const std::string& newRole, std::uint64_t token);
    const ReplicaState& state() const { return m_state; }

private:
    void Switchover(const std::string& target) override;
    void Resign() override;
    void Pause() override;
    void Resume() override;
    std::string Role() override { return m_state.role; }
    std::string ReplicaId() override { return m_id; }
    std::string AppName() override { return m_app; }
    std::string Leader() override { return m_state.leader; }
    uint64_t FencingToken() override { return m_state.fencingToken; }
    bool StoreHealthy() override { return m_state.storeHealthy; }
    bool Paused() override { return m_state.paused; }
    uint64_t LastTransitionUSec() override { return m_state.lastTransitionUSec; }
    std::string LastError() override { return m_state.lastError; }
    uint64_t LastErrorUSec() override { return m_state.lastErrorUSec; }
    std::string Mode() override { return m_state.mode; }
    uint32_t PeerSupport() override { return m_state.peerSupport; }

    void answer(const char* method, const std::function<Verdict()>& f);
    void flush();

    std::string m_id;
    std::string m_app;
    ReplicaHandlers m_handlers;
    ReplicaState m_state;
    std::set<std::string> m_dirty;
};

}  // namespace prom::api

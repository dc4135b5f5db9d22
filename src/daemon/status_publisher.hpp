#pragma once
// What prom tells the world about its replica, from one place: the journal (role changes with
// PROM_* fields and MESSAGE_ID), the D-Bus properties and RoleChanged signal, and sd_notify
// (STATUS=, READY=1 once the first role is settled).
#include <cstdint>
#include <functional>
#include <string>

#include "api/replica_state.hpp"
#include "core/election.hpp"

namespace prom::daemon {

/** What the D-Bus properties show. */
using Status = api::ReplicaState;

struct StatusSinks {
    std::function<void(const Status&)> properties;  ///< D-Bus properties (may be empty)
    std::function<void(const std::string& oldRole, const std::string& newRole, std::uint64_t token)> roleChanged;
    std::function<void(const std::string& state)> notify;  ///< one sd_notify line
    std::function<std::uint64_t()> realtimeUsec;           ///< CLOCK_REALTIME, µs
};

class StatusPublisher {
public:
    explicit StatusPublisher(StatusSinks sinks);

    /** Publishes a publish effect; false when the effect is not one. */
    bool apply(const core::Effect& effect);
    /** The store's health changed (StoreDriver): an error while unhealthy, cleared on recovery;
     *  LastErrorUSec is the start of the outage, whatever its failures' texts. */
    void storeHealth(bool healthy, const std::string& error);
    /** After every batch of events: properties that follow the core (leader, token, paused). */
    void refresh(const core::Election& election);

    const Status& status() const { return m_status; }
    bool ready() const { return m_ready; }

private:
    void push();
    /** Sets LastError (sanitised) and its time: new for a new text, kept while the text
     *  repeats, 0 when cleared. */
    void setError(const std::string& message);

    StatusSinks m_sinks;
    Status m_status;
    Status m_pushed;
    bool m_everPushed = false;
    core::Role m_role = core::Role::Starting;
    bool m_ready = false;
    bool m_storeError = false;  ///< m_status.lastError came from the store
};

}  // namespace prom::daemon

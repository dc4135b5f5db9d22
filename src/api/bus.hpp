#pragma once
// An sdbus-c++ connection driven by the sd-event loop (no second thread): the bus fd is an io
// source whose prepare callback refreshes its events and timeout from getEventLoopPollData()
// and runs the before-poll hooks (coalesced PropertiesChanged).
#include <sdbus-c++/sdbus-c++.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sd/event_loop.hpp"

namespace prom::api {

enum class BusKind { System, Session };

class BusConnection {
public:
    /** Connects to the system or session bus (DBUS_SESSION_BUS_ADDRESS for session). */
    BusConnection(sd::EventLoop& loop, BusKind kind);
    ~BusConnection();
    sdbus::IConnection& connection() { return *m_conn; }
    /** Runs before every poll of the loop. */
    void beforePoll(std::function<void()> hook) { m_hooks.push_back(std::move(hook)); }

private:
    void dispatch();
    void prepare();

    sd::EventLoop& m_loop;
    std::unique_ptr<sdbus::IConnection> m_conn;
    sd::Source m_io;
    sd::Source m_timer;
    std::uint64_t m_timerAt = 0;
    std::vector<std::function<void()>> m_hooks;
};

/** Bus name of a replica: org.prom.Prom1.Replica_ID with characters outside [A-Za-z0-9_] as _. */
std::string busNameFor(const std::string& replicaId);

inline constexpr const char* kObjectPath = "/org/prom/Prom1";
inline constexpr const char* kErrorNotActive = "org.prom.Prom1.Error.NotActive";
inline constexpr const char* kErrorStoreUnavailable = "org.prom.Prom1.Error.StoreUnavailable";
inline constexpr const char* kErrorInvalidArgs = "org.prom.Prom1.Error.InvalidArgs";

}  // namespace prom::api

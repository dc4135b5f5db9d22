#pragma once
// An sdbus-c++ connection driven by the sd-event loop (no second thread): the bus fd is an io
// source whose prepare callback refreshes its events and timeout from getEventLoopPollData()
// and runs the before-poll hooks (coalesced PropertiesChanged). Here in sd/ (not api/) because
// the unit actions use it too.
#include <sdbus-c++/sdbus-c++.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sd/event_loop.hpp"

namespace prom::sd {

enum class BusKind { System, Session };

class BusConnection {
public:
    /** Connects to the system or session bus (DBUS_SESSION_BUS_ADDRESS for session). */
    BusConnection(EventLoop& loop, BusKind kind);
    ~BusConnection();
    sdbus::IConnection& connection() { return *m_conn; }
    /** Runs before every poll of the loop. */
    void beforePoll(std::function<void()> hook) { m_hooks.push_back(std::move(hook)); }

private:
    void dispatch();
    void prepare();

    EventLoop& m_loop;
    std::unique_ptr<sdbus::IConnection> m_conn;
    Source m_io;
    Source m_timer;
    std::uint64_t m_timerAt = 0;
    std::vector<std::function<void()>> m_hooks;
};

}  // namespace prom::sd

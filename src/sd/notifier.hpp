#pragma once
// sd_notify(3) for a Type=notify service; a no-op outside systemd (no NOTIFY_SOCKET).
#include <cstdint>
#include <string>

namespace prom::sd {

/** Sends sd_notify state lines (READY=1, STATUS=..., STOPPING=1, WATCHDOG=1, ...). */
class Notifier {
public:
    void ready();
    void status(const std::string& line);
    void stopping();
    void reloading();
    void extendTimeout(unsigned long long usec);
    void send(const std::string& state);
    void watchdog();
    /** The watchdog interval systemd asked for (WatchdogSec=), 0 when none. */
    static std::uint64_t watchdogUsec();
};

}  // namespace prom::sd

#pragma once
// sd_notify(3) for a Type=notify service; a no-op outside systemd (no NOTIFY_SOCKET).
#include <chrono>
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
    /** The watchdog interval in force: WatchdogSec= of the unit, or what fitWatchdog() set; 0 = none. */
    static std::uint64_t watchdogUsec();
    /** The watchdog interval for a lease: (ttl - margin) / 2, at least kMinWatchdogUsec, never
     *  longer than unitUsec (WatchdogSec=); 0 when the unit has no watchdog. */
    static std::uint64_t watchdogUsecFor(std::chrono::milliseconds ttl, std::chrono::milliseconds margin,
                                         std::uint64_t unitUsec);
    /** Shortens the unit's watchdog at runtime (WATCHDOG_USEC=, sd_notify(3)) so that systemd
     *  kills a hung prom, and the fence takes over, well before its lease can lapse (prom(8),
     *  FENCE). Returns the interval now in force, 0 = no watchdog. */
    std::uint64_t fitWatchdog(std::chrono::milliseconds ttl, std::chrono::milliseconds margin);

    static constexpr std::uint64_t kMinWatchdogUsec = 200000;
};

}  // namespace prom::sd

#include "sd/notifier.hpp"

#include <systemd/sd-daemon.h>

#include <algorithm>

namespace prom::sd {

void Notifier::send(const std::string& state) { sd_notify(0, state.c_str()); }
void Notifier::ready() { send("READY=1"); }
void Notifier::status(const std::string& line) { send("STATUS=" + line); }
void Notifier::stopping() { send("STOPPING=1"); }
// systemd 252 has no Type=notify-reload; RELOADING=1 ... READY=1 brackets a SIGHUP reload.
void Notifier::reloading() { send("RELOADING=1"); }
void Notifier::extendTimeout(unsigned long long usec) { send("EXTEND_TIMEOUT_USEC=" + std::to_string(usec)); }

}  // namespace prom::sd

namespace prom::sd {
namespace {
// Set by fitWatchdog: sd_watchdog_enabled() keeps reporting the unit's value from the environment.
std::uint64_t g_fittedUsec = 0;
}  // namespace

void Notifier::watchdog() { send("WATCHDOG=1"); }
std::uint64_t Notifier::watchdogUsec() {
    if (g_fittedUsec) return g_fittedUsec;
    std::uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

std::uint64_t Notifier::watchdogUsecFor(std::chrono::milliseconds ttl, std::chrono::milliseconds margin,
                                        std::uint64_t unitUsec) {
    if (!unitUsec) return 0;
    auto budget = std::chrono::duration_cast<std::chrono::microseconds>(ttl - margin).count() / 2;
    auto fitted = std::max<std::int64_t>(budget, static_cast<std::int64_t>(kMinWatchdogUsec));
    return std::min<std::uint64_t>(unitUsec, static_cast<std::uint64_t>(fitted));
}

std::uint64_t Notifier::fitWatchdog(std::chrono::milliseconds ttl, std::chrono::milliseconds margin) {
    std::uint64_t unit = watchdogUsec();
    std::uint64_t usec = watchdogUsecFor(ttl, margin, unit);
    if (usec && usec < unit) {
        // sd_notify(3) WATCHDOG_USEC=: takes effect at once and restarts the watchdog timer.
        send("WATCHDOG_USEC=" + std::to_string(usec));
        g_fittedUsec = usec;
    }
    return usec;
}
}  // namespace prom::sd

#include "sd/notifier.hpp"

#include <systemd/sd-daemon.h>

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
void Notifier::watchdog() { send("WATCHDOG=1"); }
std::uint64_t Notifier::watchdogUsec() {
    std::uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
}  // namespace prom::sd

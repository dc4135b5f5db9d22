#pragma once
// A thin C++ face of sd-event (sd-event(3)): the one loop that owns every timer, fd, child
// process and signal of the daemon. Callbacks live as long as their Source.
#include <systemd/sd-event.h>

#include <exception>
#include <functional>
#include <memory>

#include "common/clock.hpp"

namespace prom::sd {

struct SourceUnref {
    void operator()(sd_event_source* s) const { sd_event_source_disable_unref(s); }
};
/** Owning handle of an event source; destroying it disables the source. */
using Source = std::unique_ptr<sd_event_source, SourceUnref>;

class EventLoop {
public:
    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    sd_event* get() const { return m_event; }
    /** CLOCK_BOOTTIME (monotonic, and counting suspend) as the election core counts it. */
    static TimePoint now();

    /** One-shot timer at a now() time point. */
    Source addTimer(TimePoint at, std::function<void()> cb);
    Source addIo(int fd, std::uint32_t events, std::function<void(std::uint32_t revents)> cb);
    /** Child exit (SIGCHLD must be blocked, see blockSignals()). */
    Source addChild(pid_t pid, std::function<void(const siginfo_t&)> cb);
    Source addSignal(int signal, std::function<void()> cb);
    /** An fd source whose prepare callback runs before every poll of the loop (sd_event_source_set_prepare):
     *  the place to update the fd's events and to flush work coalesced during a loop turn. */
    Source addIoWithPrepare(int fd, std::uint32_t events, std::function<void(std::uint32_t revents)> cb,
                            std::function<void()> prepare);

    /** Runs until exit(); an exception thrown by a callback ends the loop and is rethrown here. */
    int run();
    void exit(int code);
    /** Turns the loop until done() or the deadline (false then): for one-shot clients such as
     *  promctl, which wait for one answer at a time. A callback's exception is rethrown. */
    bool runUntil(const std::function<bool()>& done, TimePoint deadline);
    /** Called by a source's trampoline with an exception in flight: ends the loop; run() rethrows it. */
    void callbackFailed() noexcept;

    /** Blocks the signals the loop handles, before any thread or child exists. */
    static void blockSignals();

private:
    template <class... A, class F>
    static int guarded(void* p, F&& call) noexcept;

    sd_event* m_event = nullptr;
    std::exception_ptr m_failure;
};

}  // namespace prom::sd

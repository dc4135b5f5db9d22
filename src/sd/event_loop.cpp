#include "sd/event_loop.hpp"

#include <cerrno>
#include <csignal>
#include <exception>
#include <cstring>
#include <stdexcept>
#include <string>

namespace prom::sd {
namespace {

// What a source calls, with the loop that owns it: a callback that throws must not unwind
// through sd-event's C frames, so the trampoline catches, ends the loop, and run() rethrows.
template <class F>
struct Callback {
    EventLoop* loop;
    F fn;
};

template <class F>
Callback<F>* attach(sd_event_source* s, Callback<F>* cb) {
    sd_event_source_set_userdata(s, cb);
    sd_event_source_set_destroy_callback(s, [](void* p) { delete static_cast<Callback<F>*>(p); });
    return cb;
}

// Once the loop has finished (sd_event_exit was dispatched), sd-event refuses new sources
// with -ESTALE. Teardown still runs callbacks that would arm one (curl removing its handles
// asks for a timer): there is nothing left to wake, so they get an empty source.
constexpr int kFinished = -ESTALE;

void check(int r, const char* what) {
    // Failing to add an event source means the loop itself is broken: a bug or resource
    // exhaustion, which ends the process so that systemd restarts it.
    if (r < 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(-r));
}

}  // namespace

EventLoop::EventLoop() { check(sd_event_new(&m_event), "sd_event_new"); }
EventLoop::~EventLoop() { sd_event_unref(m_event); }

// CLOCK_BOOTTIME: a lease keeps running in the store while this machine is suspended, and
// CLOCK_MONOTONIC would stop; deadlines must count that time.
TimePoint EventLoop::now() {
    timespec ts{};
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return TimePoint(Duration(ts.tv_sec * 1000LL + ts.tv_nsec / 1000000));
}

void EventLoop::callbackFailed() noexcept {
    if (!m_failure) m_failure = std::current_exception();
    sd_event_exit(m_event, 1);
}

template <class... A, class F>
int EventLoop::guarded(void* p, F&& call) noexcept {
    auto* cb = static_cast<Callback<std::function<void(A...)>>*>(p);
    try {
        call(cb->fn);
    } catch (...) {
        cb->loop->callbackFailed();
    }
    return 0;
}

Source EventLoop::addTimer(TimePoint at, std::function<void()> cb) {
    sd_event_source* s = nullptr;
    auto usec = static_cast<std::uint64_t>(std::max<std::int64_t>(at.time_since_epoch().count(), 0)) * 1000;
    int r = sd_event_add_time(
        m_event, &s, CLOCK_BOOTTIME, usec, 1000,
        [](sd_event_source*, std::uint64_t, void* p) { return guarded<>(p, [](auto& f) { f(); }); }, nullptr);
    if (r == kFinished) return Source();
    check(r, "sd_event_add_time");
    attach(s, new Callback<std::function<void()>>{this, std::move(cb)});
    return Source(s);
}

Source EventLoop::addIo(int fd, std::uint32_t events, std::function<void(std::uint32_t)> cb) {
    sd_event_source* s = nullptr;
    int r = sd_event_add_io(
        m_event, &s, fd, events,
        [](sd_event_source*, int, std::uint32_t revents, void* p) {
            return guarded<std::uint32_t>(p, [revents](auto& f) { f(revents); });
        },
        nullptr);
    if (r == kFinished) return Source();
    check(r, "sd_event_add_io");
    attach(s, new Callback<std::function<void(std::uint32_t)>>{this, std::move(cb)});
    return Source(s);
}

Source EventLoop::addChild(pid_t pid, std::function<void(const siginfo_t&)> cb) {
    sd_event_source* s = nullptr;
    int r = sd_event_add_child(
        m_event, &s, pid, WEXITED,
        [](sd_event_source*, const siginfo_t* si, void* p) {
            return guarded<const siginfo_t&>(p, [si](auto& f) { f(*si); });
        },
        nullptr);
    if (r == kFinished) return Source();
    check(r, "sd_event_add_child");
    attach(s, new Callback<std::function<void(const siginfo_t&)>>{this, std::move(cb)});
    return Source(s);
}

Source EventLoop::addSignal(int signal, std::function<void()> cb) {
    sd_event_source* s = nullptr;
    check(sd_event_add_signal(
              m_event, &s, signal,
              [](sd_event_source*, const signalfd_siginfo*, void* p) { return guarded<>(p, [](auto& f) { f(); }); },
              nullptr),
          "sd_event_add_signal");
    attach(s, new Callback<std::function<void()>>{this, std::move(cb)});
    return Source(s);
}

Source EventLoop::addIoWithPrepare(int fd, std::uint32_t events, std::function<void(std::uint32_t)> cb,
                                   std::function<void()> prepare) {
    struct Both {
        std::function<void(std::uint32_t)> io;
        std::function<void()> prepare;
    };
    sd_event_source* s = nullptr;
    check(sd_event_add_io(
              m_event, &s, fd, events,
              [](sd_event_source*, int, std::uint32_t revents, void* p) {
                  auto* cb = static_cast<Callback<Both>*>(p);
                  try {
                      cb->fn.io(revents);
                  } catch (...) {
                      cb->loop->callbackFailed();
                  }
                  return 0;
              },
              nullptr),
          "sd_event_add_io");
    attach(s, new Callback<Both>{this, Both{std::move(cb), std::move(prepare)}});
    check(sd_event_source_set_prepare(s,
                                      [](sd_event_source*, void* p) {
                                          auto* cb = static_cast<Callback<Both>*>(p);
                                          try {
                                              cb->fn.prepare();
                                          } catch (...) {
                                              cb->loop->callbackFailed();
                                          }
                                          return 0;
                                      }),
          "sd_event_source_set_prepare");
    return Source(s);
}

int EventLoop::run() {
    int r = sd_event_loop(m_event);
    if (m_failure) {
        std::exception_ptr e = std::move(m_failure);
        m_failure = nullptr;
        std::rethrow_exception(e);
    }
    return r;
}
void EventLoop::exit(int code) { sd_event_exit(m_event, code); }

bool EventLoop::runUntil(const std::function<bool()>& done, TimePoint deadline) {
    while (!done()) {
        TimePoint t = now();
        if (t >= deadline) return false;
        auto usec = std::chrono::duration_cast<std::chrono::microseconds>(deadline - t).count();
        int r = sd_event_run(m_event, static_cast<std::uint64_t>(usec));
        if (m_failure) {
            std::exception_ptr e = std::move(m_failure);
            m_failure = nullptr;
            std::rethrow_exception(e);
        }
        if (r < 0) throw std::runtime_error("sd_event_run failed: " + std::string(std::strerror(-r)));
    }
    return true;
}

void EventLoop::blockSignals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    // A script that exits while prom writes to its closed pipe must not kill prom.
    std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace prom::sd

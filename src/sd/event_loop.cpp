#include "sd/event_loop.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string>

namespace prom::sd {
namespace {

template <class F>
F* attach(sd_event_source* s, F* fn) {
    sd_event_source_set_userdata(s, fn);
    sd_event_source_set_destroy_callback(s, [](void* p) { delete static_cast<F*>(p); });
    return fn;
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

core::TimePoint EventLoop::now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return core::TimePoint(core::Duration(ts.tv_sec * 1000LL + ts.tv_nsec / 1000000));
}

Source EventLoop::addTimer(core::TimePoint at, std::function<void()> cb) {
    sd_event_source* s = nullptr;
    auto usec = static_cast<std::uint64_t>(std::max<std::int64_t>(at.time_since_epoch().count(), 0)) * 1000;
    int r = sd_event_add_time(
        m_event, &s, CLOCK_MONOTONIC, usec, 1000,
        [](sd_event_source*, std::uint64_t, void* p) {
            (*static_cast<std::function<void()>*>(p))();
            return 0;
        },
        nullptr);
    if (r == kFinished) return Source();
    check(r, "sd_event_add_time");
    attach(s, new std::function<void()>(std::move(cb)));
    return Source(s);
}

Source EventLoop::addIo(int fd, std::uint32_t events, std::function<void(std::uint32_t)> cb) {
    sd_event_source* s = nullptr;
    int r = sd_event_add_io(
        m_event, &s, fd, events,
        [](sd_event_source*, int, std::uint32_t revents, void* p) {
            (*static_cast<std::function<void(std::uint32_t)>*>(p))(revents);
            return 0;
        },
        nullptr);
    if (r == kFinished) return Source();
    check(r, "sd_event_add_io");
    attach(s, new std::function<void(std::uint32_t)>(std::move(cb)));
    return Source(s);
}

Source EventLoop::addChild(pid_t pid, std::function<void(const siginfo_t&)> cb) {
    sd_event_source* s = nullptr;
    int r = sd_event_add_child(
        m_event, &s, pid, WEXITED,
        [](sd_event_source*, const siginfo_t* si, void* p) {
            (*static_cast<std::function<void(const siginfo_t&)>*>(p))(*si);
            return 0;
        },
        nullptr);
    if (r == kFinished) return Source();
    check(r, "sd_event_add_child");
    attach(s, new std::function<void(const siginfo_t&)>(std::move(cb)));
    return Source(s);
}

Source EventLoop::addSignal(int signal, std::function<void()> cb) {
    sd_event_source* s = nullptr;
    check(sd_event_add_signal(
              m_event, &s, signal,
              [](sd_event_source*, const signalfd_siginfo*, void* p) {
                  (*static_cast<std::function<void()>*>(p))();
                  return 0;
              },
              nullptr),
          "sd_event_add_signal");
    attach(s, new std::function<void()>(std::move(cb)));
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
                  static_cast<Both*>(p)->io(revents);
                  return 0;
              },
              nullptr),
          "sd_event_add_io");
    attach(s, new Both{std::move(cb), std::move(prepare)});
    check(sd_event_source_set_prepare(s,
                                      [](sd_event_source* src, void* p) {
                                          static_cast<Both*>(p)->prepare();
                                          (void)src;
                                          return 0;
                                      }),
          "sd_event_source_set_prepare");
    return Source(s);
}

int EventLoop::run() { return sd_event_loop(m_event); }
void EventLoop::exit(int code) { sd_event_exit(m_event, code); }

void EventLoop::blockSignals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    // A script that exits while prom writes to its closed pipe must not kill prom.
    std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace prom::sd

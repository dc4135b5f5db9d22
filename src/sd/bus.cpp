#include "sd/bus.hpp"

#include <poll.h>
#include <time.h>

namespace prom::sd {

BusConnection::BusConnection(EventLoop& loop, BusKind kind)
    : m_loop(loop),
      m_conn(kind == BusKind::System ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection()) {
    auto pd = m_conn->getEventLoopPollData();
    m_io = m_loop.addIoWithPrepare(
        pd.fd, EPOLLIN, [this](std::uint32_t) { dispatch(); }, [this] { prepare(); });
}

BusConnection::~BusConnection() {
    m_io.reset();
    m_timer.reset();
}

void BusConnection::dispatch() {
    try {
        while (m_conn->processPendingRequest()) {
        }
    } catch (const sdbus::Error& e) {
        // A broken bus connection is not recoverable here: end so that systemd restarts us.
        throw std::runtime_error(std::string("D-Bus connection failed: ") + e.getName() + ": " + e.getMessage());
    }
}

void BusConnection::prepare() {
    for (auto& hook : m_hooks) hook();
    auto pd = m_conn->getEventLoopPollData();
    std::uint32_t events = 0;
    if (pd.events & POLLIN) events |= EPOLLIN;
    if (pd.events & POLLOUT) events |= EPOLLOUT;
    sd_event_source_set_io_events(m_io.get(), events);
    if (pd.timeout_usec == UINT64_MAX) {
        m_timer.reset();
        m_timerAt = 0;
    } else if (!m_timer || pd.timeout_usec != m_timerAt) {
        m_timerAt = pd.timeout_usec;
        // sd-bus gives an absolute CLOCK_MONOTONIC time; the loop runs on CLOCK_BOOTTIME.
        timespec mono{};
        clock_gettime(CLOCK_MONOTONIC, &mono);
        std::uint64_t nowUsec = static_cast<std::uint64_t>(mono.tv_sec) * 1000000 + static_cast<std::uint64_t>(mono.tv_nsec) / 1000;
        auto in = Duration(pd.timeout_usec > nowUsec ? (pd.timeout_usec - nowUsec + 999) / 1000 : 0);
        m_timer = m_loop.addTimer(EventLoop::now() + in, [this] {
            m_timerAt = 0;
            dispatch();
        });
    }
}

}  // namespace prom::sd

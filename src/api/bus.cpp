#include "api/bus.hpp"

#include <poll.h>

#include <cctype>

#include "common/log.hpp"

namespace prom::api {

std::string busNameFor(const std::string& replicaId) {
    std::string s = "org.prom.Prom1.Replica_";
    for (unsigned char c : replicaId) s += (std::isalnum(c) || c == '_') ? static_cast<char>(c) : '_';
    return s;
}

BusConnection::BusConnection(sd::EventLoop& loop, BusKind kind)
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
        m_timer = m_loop.addTimer(core::TimePoint(core::Duration(pd.timeout_usec / 1000)), [this] {
            m_timerAt = 0;
            dispatch();
        });
    }
}

}  // namespace prom::api

#include "peer/transport.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace prom::peer {

Result<Address> resolve(const std::string& hostPort) {
    std::string host, port;
    if (!hostPort.empty() && hostPort.front() == '[') {
        auto close = hostPort.find(']');
        if (close == std::string::npos || close + 1 >= hostPort.size() || hostPort[close + 1] != ':')
            return Error{"\"" + hostPort + "\" is not [IPv6]:PORT"};
        host = hostPort.substr(1, close - 1);
        port = hostPort.substr(close + 2);
    } else {
        auto colon = hostPort.rfind(':');
        if (colon == std::string::npos || colon == 0) return Error{"\"" + hostPort + "\" is not HOST:PORT"};
        host = hostPort.substr(0, colon);
        port = hostPort.substr(colon + 1);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
        return Error{"cannot resolve \"" + hostPort + "\": " + gai_strerror(rc)};
    Address a;
    std::memcpy(&a.addr, res->ai_addr, res->ai_addrlen);
    a.len = res->ai_addrlen;
    freeaddrinfo(res);
    return a;
}

Transport::Transport(sd::EventLoop& loop, Settings s, Feed feed)
    : m_loop(loop), m_s(std::move(s)), m_feed(std::move(feed)), m_boot(randomBoot()) {}

Transport::~Transport() {
    m_io.reset();
    if (m_fd >= 0) close(m_fd);
}

Result<Ok> Transport::open() {
    auto self = resolve(m_s.listen);
    if (!self) return Error{"[replica." + m_s.self + "] address: " + self.error().message};
    for (const auto& [id, hp] : m_s.peers) {
        auto a = resolve(hp);
        if (!a) return Error{"[replica." + id + "] address: " + a.error().message};
        m_addresses[id] = *a;
    }
    m_fd = socket(self->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m_fd < 0) return Error{std::string("peer socket: ") + std::strerror(errno)};
    // Heartbeats are small and frequent: mark them for low-latency queueing where it matters.
    int tos = 0x10;  // IPTOS_LOWDELAY
    if (self->addr.ss_family == AF_INET) setsockopt(m_fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    if (bind(m_fd, reinterpret_cast<const sockaddr*>(&self->addr), self->len) != 0)
        return Error{"cannot bind the peer socket to " + m_s.listen + ": " + std::strerror(errno)};
    m_io = m_loop.addIo(m_fd, EPOLLIN, [this](std::uint32_t) { onReadable(); });
    return Ok{};
}

bool Transport::apply(const core::Effect& effect) {
    if (auto* h = std::get_if<core::SendHeartbeat>(&effect)) {
        Message m;
        m.type = Message::Type::Heartbeat;
        m.epoch = h->epoch;
        m.seq = h->seq;
        m.withdrawn = h->withdrawn;
        for (const auto& [id, addr] : m_addresses) send(id, m);
        return true;
    }
    if (auto* a = std::get_if<core::SendAck>(&effect)) {
        Message m;
        m.type = Message::Type::Ack;
        m.epoch = a->epoch;
        m.seq = a->seq;
        m.supported = a->supported;
        auto it = m_ackBoots.find(a->to);
        if (it == m_ackBoots.end()) return true;  // the heartbeat's run is unknown: nothing to answer
        m.ackBoot = it->second;
        send(a->to, m);
        return true;
    }
    return false;
}

void Transport::send(const std::string& to, Message m) {
    auto it = m_addresses.find(to);
    if (it == m_addresses.end()) return;
    m.from = m_s.self;
    m.boot = m_boot;
    m.counter = ++m_counter;
    auto bytes = encode(m, m_s.key);
    // EAGAIN/ENOBUFS/ECONNREFUSED: lost like a datagram on the wire; the next heartbeat repeats.
    (void)sendto(m_fd, bytes.data(), bytes.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&it->second.addr),
                 it->second.len);
}

void Transport::reject(const std::string& why) {
    ++m_rejected;
    // Rate-limited: a flood of forged datagrams must not flood the journal too.
    TimePoint now = sd::EventLoop::now();
    if (m_lastRejectLog == TimePoint{} || now - m_lastRejectLog >= std::chrono::seconds(10)) {
        m_lastRejectLog = now;
        log::warning("peer datagram rejected: " + why + " (" + std::to_string(m_rejected) + " so far)");
    }
}

void Transport::onReadable() {
    std::array<std::uint8_t, 512> buf{};
    for (int i = 0; i < 64; ++i) {  // bounded per wake-up: other sources get their turn
        ssize_t n = recv(m_fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) return;  // EAGAIN: drained (other errors: ICMP reports of a dead peer)
        if (static_cast<std::size_t>(n) > buf.size()) {
            reject("oversized datagram");
            continue;
        }
        auto m = decode(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)), m_s.key);
        if (!m) {
            reject(m.error().message);
            continue;
        }
        if (!m_addresses.count(m->from)) {
            reject("sender \"" + m->from + "\" is not a peer");
            continue;
        }
        if (!m_replay.accept(*m)) {
            reject("replayed datagram from " + m->from);
            continue;
        }
        if (m->type == Message::Type::Ack && m->ackBoot != m_boot) {
            reject("ack from " + m->from + " for an earlier run of this replica");
            continue;
        }
        ++m_accepted;
        if (m->type == Message::Type::Heartbeat) {
            m_ackBoots[m->from] = m->boot;
            m_feed(core::PeerHeartbeat{m->from, m->epoch, m->seq, m->withdrawn});
        } else {
            m_feed(core::PeerAck{m->from, m->epoch, m->seq, m->supported});
        }
    }
}

}  // namespace prom::peer

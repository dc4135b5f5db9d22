#pragma once
// Fast mode's UDP peer transport on the sd-event loop: carries the core's SendHeartbeat and
// SendAck effects to the peers and brings their datagrams back as PeerHeartbeat / PeerAck events,
// after checking size, HMAC, sender and replays (codec.hpp). Never blocks: a datagram the kernel
// cannot queue is dropped like one lost on the wire (the protocol repeats everything).
#include <sys/socket.h>

#include <functional>
#include <map>
#include <string>

#include "common/result.hpp"
#include "core/election.hpp"
#include "peer/codec.hpp"
#include "sd/event_loop.hpp"

namespace prom::peer {

struct Settings {
    std::string self;
    std::string listen;                        ///< this replica's "host:port" ([v6]:port)
    std::map<std::string, std::string> peers;  ///< id -> "host:port" of every other member
    std::string key;                           ///< shared HMAC key (at least 16 bytes)
};

/** A resolved "host:port". */
struct Address {
    sockaddr_storage addr{};
    socklen_t len = 0;
};
Result<Address> resolve(const std::string& hostPort);

class Transport {
public:
    using Feed = std::function<void(core::Event)>;
    Transport(sd::EventLoop& loop, Settings s, Feed feed);
    ~Transport();
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    /** The shared HMAC key (read by the daemon from peer-key-file or its credential). */
    void setKey(std::string key) { m_s.key = std::move(key); }
    /** Resolves the addresses and binds the socket. */
    Result<Ok> open();
    /** Sends a peer effect; false when the effect is not one. */
    bool apply(const core::Effect& effect);

    /** Datagrams dropped: wrong size or HMAC, unknown sender, replayed, ack for another run. */
    std::uint64_t rejected() const { return m_rejected; }
    std::uint64_t accepted() const { return m_accepted; }

private:
    void onReadable();
    void send(const std::string& to, Message m);
    void reject(const std::string& why);

    sd::EventLoop& m_loop;
    Settings m_s;
    Feed m_feed;
    int m_fd = -1;
    sd::Source m_io;
    std::map<std::string, Address> m_addresses;
    BootId m_boot;
    std::uint64_t m_counter = 0;
    ReplayGuard m_replay;
    std::map<std::string, BootId> m_ackBoots;  ///< run of each peer's latest heartbeat
    std::uint64_t m_rejected = 0;
    std::uint64_t m_accepted = 0;
    TimePoint m_lastRejectLog{};
};

}  // namespace prom::peer

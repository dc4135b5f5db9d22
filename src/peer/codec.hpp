#pragma once
// Fast-mode peer messages on the wire (prom(8) FAST MODE): one fixed-size UDP datagram per
// heartbeat or ack, authenticated with HMAC-SHA256 under the deployment's shared peer key.
// Pure functions, no sockets: the transport (transport.hpp) and the tests use them.
//
// Layout, big-endian, kDatagramSize (135) bytes:
//   "PRM1" | type u8 (1 heartbeat, 2 ack) | supported u8 | from-len u8 | from [32] |
//   boot [16] | counter u64 | epoch i64 | seq u64 | withdrawn i64 | ack-boot [16] | HMAC [32]
// `boot` is random per prom process and `counter` grows with every datagram it sends: together
// they make a replayed datagram recognisable. An ack names the boot of the heartbeat it
// answers, so an ack recorded before the holder restarted cannot match a new heartbeat.
#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace prom::peer {

using BootId = std::array<std::uint8_t, 16>;

inline constexpr std::size_t kMaxIdLength = 32;
inline constexpr std::size_t kDatagramSize = 4 + 3 + kMaxIdLength + 16 + 4 * 8 + 16 + 32;

struct Message {
    enum class Type : std::uint8_t { Heartbeat = 1, Ack = 2 } type = Type::Heartbeat;
    std::string from;
    BootId boot{};
    std::uint64_t counter = 0;
    std::int64_t epoch = 0;
    std::uint64_t seq = 0;
    std::int64_t withdrawn = 0;  ///< heartbeat: highest epoch the sender withdrew
    bool supported = false;      ///< ack
    BootId ackBoot{};            ///< ack: boot of the heartbeat's sender
    bool operator==(const Message&) const = default;
};

/** The datagram for m, signed with key. from must be 1..32 bytes. */
std::vector<std::uint8_t> encode(const Message& m, const std::string& key);
/** Checks size, magic, fields and the HMAC (constant time); the message or why not. */
Result<Message> decode(std::span<const std::uint8_t> datagram, const std::string& key);

/** Replay protection per sender: a datagram is accepted only with a counter above the last
 *  accepted one of the same boot; a boot that was replaced by a newer one is never accepted
 *  again (a replayed datagram of an earlier run of the peer). */
class ReplayGuard {
public:
    bool accept(const Message& m);

private:
    struct Peer {
        BootId boot{};
        std::uint64_t counter = 0;
        std::vector<BootId> retired;  ///< earlier boots, most recent last (bounded)
    };
    std::map<std::string, Peer> m_peers;
};

/** A fresh random boot id (getrandom). */
BootId randomBoot();

}  // namespace prom::peer

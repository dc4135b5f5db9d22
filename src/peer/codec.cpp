#include "peer/codec.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace prom::peer {
namespace {

constexpr std::uint8_t kMagic[4] = {'P', 'R', 'M', '1'};
constexpr std::size_t kMacSize = 32;

void put64(std::vector<std::uint8_t>& out, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get64(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
    return v;
}

std::array<std::uint8_t, kMacSize> mac(const std::string& key, const std::uint8_t* data, std::size_t n) {
    std::array<std::uint8_t, kMacSize> out{};
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data, n, out.data(), &len) || len != kMacSize)
        throw std::runtime_error("HMAC-SHA256 failed in libcrypto");
    return out;
}

}  // namespace

std::vector<std::uint8_t> encode(const Message& m, const std::string& key) {
    if (m.from.empty() || m.from.size() > kMaxIdLength)
        throw std::invalid_argument("peer message: replica id must be 1..32 bytes");
    std::vector<std::uint8_t> out;
    out.reserve(kDatagramSize);
    out.insert(out.end(), kMagic, kMagic + 4);
    out.push_back(static_cast<std::uint8_t>(m.type));
    out.push_back(m.supported ? 1 : 0);
    out.push_back(static_cast<std::uint8_t>(m.from.size()));
    std::array<std::uint8_t, kMaxIdLength> id{};
    std::memcpy(id.data(), m.from.data(), m.from.size());
    out.insert(out.end(), id.begin(), id.end());
    out.insert(out.end(), m.boot.begin(), m.boot.end());
    put64(out, m.counter);
    put64(out, static_cast<std::uint64_t>(m.epoch));
    put64(out, m.seq);
    put64(out, static_cast<std::uint64_t>(m.withdrawn));
    out.insert(out.end(), m.ackBoot.begin(), m.ackBoot.end());
    auto tag = mac(key, out.data(), out.size());
    out.insert(out.end(), tag.begin(), tag.end());
    return out;
}

Result<Message> decode(std::span<const std::uint8_t> d, const std::string& key) {
    if (d.size() != kDatagramSize)
        return Error{"wrong size " + std::to_string(d.size()) + " (want " + std::to_string(kDatagramSize) + ")"};
    if (!std::equal(kMagic, kMagic + 4, d.begin())) return Error{"not a prom peer datagram (magic)"};
    // Authenticate before trusting any field.
    auto tag = mac(key, d.data(), d.size() - kMacSize);
    if (CRYPTO_memcmp(tag.data(), d.data() + d.size() - kMacSize, kMacSize) != 0)
        return Error{"bad HMAC (wrong peer key?)"};
    const std::uint8_t* p = d.data() + 4;
    Message m;
    if (p[0] != 1 && p[0] != 2) return Error{"unknown type " + std::to_string(p[0])};
    m.type = static_cast<Message::Type>(p[0]);
    if (p[1] > 1) return Error{"bad flags"};
    m.supported = p[1] == 1;
    std::size_t idLen = p[2];
    if (idLen == 0 || idLen > kMaxIdLength) return Error{"bad replica id length"};
    p += 3;
    m.from.assign(reinterpret_cast<const char*>(p), idLen);
    p += kMaxIdLength;
    std::copy(p, p + 16, m.boot.begin());
    p += 16;
    m.counter = get64(p);
    m.epoch = static_cast<std::int64_t>(get64(p + 8));
    m.seq = get64(p + 16);
    m.withdrawn = static_cast<std::int64_t>(get64(p + 24));
    p += 32;
    std::copy(p, p + 16, m.ackBoot.begin());
    if (m.epoch < 0 || m.withdrawn < 0) return Error{"negative epoch"};
    return m;
}

bool ReplayGuard::accept(const Message& m) {
    auto [it, fresh] = m_peers.try_emplace(m.from);
    Peer& p = it->second;
    if (fresh) {
        p.boot = m.boot;
        p.counter = m.counter;
        return true;
    }
    if (m.boot == p.boot) {
        if (m.counter <= p.counter) return false;
        p.counter = m.counter;
        return true;
    }
    if (std::find(p.retired.begin(), p.retired.end(), m.boot) != p.retired.end()) return false;
    // A new run of the peer. Its boot is random, so an attacker cannot predict one; replaying
    // a boot this guard has seen before is refused above.
    p.retired.push_back(p.boot);
    if (p.retired.size() > 16) p.retired.erase(p.retired.begin());
    p.boot = m.boot;
    p.counter = m.counter;
    return true;
}

BootId randomBoot() {
    BootId b{};
    std::size_t got = 0;
    while (got < b.size()) {
        ssize_t n = getrandom(b.data() + got, b.size() - got, 0);
        if (n < 0) throw std::runtime_error("getrandom failed");
        got += static_cast<std::size_t>(n);
    }
    return b;
}

}  // namespace prom::peer

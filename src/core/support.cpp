#include "core/support.hpp"

#include <algorithm>
#include <cmath>

namespace prom::core {

namespace {
Duration scaled(Duration d, double factor, bool up) {
    double v = static_cast<double>(d.count()) * factor;
    return Duration(static_cast<Duration::rep>(up ? std::ceil(v) : std::floor(v)));
}
}  // namespace

// ---- supporter ----------------------------------------------------------------------------

void Supporter::start(TimePoint now) {
    // Rounded up: the wait must cover every promise the previous incarnation could have made.
    m_quietUntil = now + scaled(m_t.support, 1.0 + m_t.drift, true);
}

void Supporter::setFloor(std::int64_t revision) {
    if (!m_floor) m_floor = revision;
}

bool Supporter::onHeartbeat(TimePoint now, const std::string& holder, std::int64_t epoch) {
    if (epoch <= 0 || quiet(now) || !m_floor || epoch <= *m_floor || epoch < m_forgotten) return false;
    auto [it, fresh] = m_epochs.try_emplace(epoch, Entry{holder, now + m_t.support, false});
    Entry& e = it->second;
    // An epoch is one key, held by one replica: a heartbeat naming another holder is not that key.
    if (e.withdrawn || e.holder != holder) return false;
    // Support runs out strictly at until: a heartbeat received at or after it comes too late
    // (expire() withdraws at until, and the holder may have stopped counting already).
    if (!fresh && now >= e.until) return false;
    e.until = std::max(e.until, now + m_t.support);
    return true;
}

void Supporter::onKey(TimePoint now, const std::string& holder, std::int64_t epoch) {
    if (epoch <= 0 || epoch < m_forgotten) return;
    // Started no earlier than the restart wait ends: a restarted prom withdraws nothing before.
    TimePoint until = std::max(now, m_quietUntil) + m_t.support;
    m_epochs.try_emplace(epoch, Entry{holder, until, false});
}

std::vector<std::int64_t> Supporter::expire(TimePoint now) {
    std::vector<std::int64_t> out;
    if (quiet(now)) return out;
    for (auto& [epoch, e] : m_epochs) {
        if (e.withdrawn || now < e.until) continue;
        e.withdrawn = true;
        m_latestWithdrawn = std::max(m_latestWithdrawn, epoch);
        out.push_back(epoch);
    }
    return out;
}

bool Supporter::withdrawn(std::int64_t epoch) const {
    auto it = m_epochs.find(epoch);
    return it != m_epochs.end() && it->second.withdrawn;
}

void Supporter::forgetBelow(std::int64_t epoch) {
    m_forgotten = std::max(m_forgotten, epoch);
    std::erase_if(m_epochs, [&](const auto& kv) { return kv.first < m_forgotten; });
}

std::optional<TimePoint> Supporter::nextExpiry() const {
    std::optional<TimePoint> best;
    for (const auto& [epoch, e] : m_epochs) {
        if (e.withdrawn) continue;
        TimePoint t = std::max(e.until, m_quietUntil);
        if (!best || t < *best) best = t;
    }
    return best;
}

// ---- holder -------------------------------------------------------------------------------

Duration HolderSupport::counted() const {
    return scaled(m_t.support, (1.0 - m_t.drift) / (1.0 + m_t.drift), false);
}

void HolderSupport::begin(std::int64_t epoch) {
    if (epoch == m_epoch) return;
    m_epoch = epoch;
    m_sent.clear();
    m_until.clear();
}

void HolderSupport::sent(TimePoint now, std::uint64_t seq) {
    if (m_epoch) m_sent[seq] = now;
}

void HolderSupport::acked(const std::string& peer, std::int64_t epoch, std::uint64_t seq, bool supported) {
    if (!m_epoch || epoch != m_epoch || !supported) return;
    auto it = m_sent.find(seq);
    if (it == m_sent.end()) return;  // not ours, or from an earlier epoch: proves nothing
    TimePoint until = it->second + counted();
    auto [u, fresh] = m_until.try_emplace(peer, until);
    if (!fresh) u->second = std::max(u->second, until);
}

std::optional<TimePoint> HolderSupport::deadline() const {
    const std::size_t needed = static_cast<std::size_t>(quorum() - 1);  // the holder counts itself
    if (needed == 0) return TimePoint::max();
    if (m_until.size() < needed) return std::nullopt;
    std::vector<TimePoint> ds;
    for (const auto& [peer, t] : m_until) ds.push_back(t);
    std::sort(ds.begin(), ds.end(), std::greater<>());
    return ds[needed - 1];
}

unsigned HolderSupport::supporters(TimePoint now) const {
    unsigned n = 0;
    for (const auto& [peer, t] : m_until)
        if (now < t) ++n;
    return n;
}

void HolderSupport::prune(TimePoint now) {
    // A send older than S ago cannot give support beyond now any more.
    std::erase_if(m_sent, [&](const auto& kv) { return kv.second + m_t.support < now; });
}

}  // namespace prom::core

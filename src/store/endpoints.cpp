#include "store/endpoints.hpp"

#include <algorithm>
#include <stdexcept>

namespace prom::store {

Endpoints::Endpoints(std::size_t count, Options options, std::uint64_t seed)
    : m_options(options), m_health(count), m_random(seed) {
    if (count == 0) throw std::invalid_argument("Endpoints: no endpoint");
    if (m_options.backoffBase.count() <= 0) m_options.backoffBase = Duration(1);
    m_options.backoffCap = std::max(m_options.backoffCap, m_options.backoffBase);
}

std::vector<std::size_t> Endpoints::plan() const {
    const std::size_t n = m_health.size();
    std::vector<std::size_t> order;
    order.reserve(n);
    order.push_back(m_preferred);
    // Healthy ones first: a member that just timed out would cost another request timeout.
    for (int pass = 0; pass < 2; ++pass)
        for (std::size_t k = 1; k < n; ++k) {
            std::size_t i = (m_preferred + k) % n;
            if (m_health[i].healthy == (pass == 0)) order.push_back(i);
        }
    return order;
}

void Endpoints::succeeded(std::size_t i, TimePoint now) {
    m_health[i].healthy = true;
    m_health[i].lastSuccess = now;
    m_preferred = i;
    m_failedRounds = 0;
    m_nextRound = TimePoint{};
}

void Endpoints::failed(std::size_t i, TimePoint now) {
    m_health[i].healthy = false;
    m_health[i].lastFailure = now;
    // Only the endpoint in use moves on: a late failure of a request that went to another
    // one must not push requests away from the endpoint that answers now.
    if (i != m_preferred) return;
    const std::size_t n = m_health.size();
    for (std::size_t k = 1; k < n; ++k) {
        std::size_t j = (i + k) % n;
        if (m_health[j].healthy) {
            m_preferred = j;
            return;
        }
    }
    m_preferred = (i + 1) % n;  // none healthy: still rotate, so that each gets its turn
}

Duration Endpoints::jitter(Duration d) {
    if (d.count() <= 1) return d;
    std::uniform_int_distribution<std::int64_t> pick(d.count() / 2, d.count());
    return Duration(pick(m_random));
}

void Endpoints::roundFailed(TimePoint now) {
    // Concurrent requests that fail in the same outage extend one backoff, not one each.
    if (now < m_nextRound) return;
    ++m_failedRounds;
    Duration d = m_options.backoffBase;
    for (int k = 1; k < m_failedRounds && d < m_options.backoffCap; ++k) d *= 2;
    d = std::min(d, m_options.backoffCap);
    m_nextRound = now + jitter(d);
}

}  // namespace prom::store

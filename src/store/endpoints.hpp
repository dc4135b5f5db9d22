#pragma once
// Which store endpoint a request goes to, and when (issue 9): per-endpoint health, rotation on
// any failure, each endpoint tried at most once per logical request, and a jittered backoff
// between rounds that all failed. Pure bookkeeping with the caller's clock, so that it is unit
// tested with a fake one; the stores (etcd, MUSIC) own the I/O.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "common/clock.hpp"

namespace prom::store {

class Endpoints {
public:
    struct Options {
        /** First backoff after a round in which every endpoint failed. */
        Duration backoffBase{50};
        /** Longest backoff: well below TTL/3, so that a returning store is used in time. */
        Duration backoffCap{500};
    };

    /** count endpoints (at least one); seed drives the jitter (fixed in tests). */
    Endpoints(std::size_t count, Options options, std::uint64_t seed);

    std::size_t size() const { return m_health.size(); }
    /** The endpoint requests go to first: the last one that answered, or the next after one that failed. */
    std::size_t preferred() const { return m_preferred; }
    /** The order in which one logical request tries the endpoints, each once: the preferred
     *  one, then the others in configuration order, those that have not failed last first. */
    std::vector<std::size_t> plan() const;
    /** The endpoint answered (an HTTP answer it stands behind, even an error of the request). */
    void succeeded(std::size_t i, TimePoint now);
    /** Any failure of a request on i (refused, timed out, no leader, 5xx, garbage): the
     *  next request starts elsewhere. */
    void failed(std::size_t i, TimePoint now);
    /** A logical request failed on every endpoint: the next round waits a jittered backoff. */
    void roundFailed(TimePoint now);
    /** Earliest time the next logical request may go out (in the past when no backoff runs). */
    TimePoint nextRoundAt() const { return m_nextRound; }
    /** Whether the last request on i succeeded. */
    bool healthy(std::size_t i) const { return m_health[i].healthy; }
    /** Last success on i (epoch when never). */
    TimePoint lastSuccess(std::size_t i) const { return m_health[i].lastSuccess; }
    /** Consecutive rounds that failed everywhere (0 once any endpoint answers). */
    int failedRounds() const { return m_failedRounds; }
    /** A jittered delay in [d/2, d] (also used for the watch's reopen backoff). */
    Duration jitter(Duration d);
    const Options& options() const { return m_options; }

private:
    struct Health {
        bool healthy = true;
        TimePoint lastSuccess{};
        TimePoint lastFailure{};
    };
    Options m_options;
    std::vector<Health> m_health;
    std::size_t m_preferred = 0;
    int m_failedRounds = 0;
    TimePoint m_nextRound{};
    std::mt19937_64 m_random;
};

}  // namespace prom::store

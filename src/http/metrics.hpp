#pragma once
// What /metrics, /health and /active report: a snapshot the daemon hands over on each request,
// and its rendering in the Prometheus text format (0.0.4) and OpenMetrics 1.0.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace prom::http {

/** A fixed-bucket histogram of durations in seconds (cumulative on output, as Prometheus wants). */
class Histogram {
public:
    /** bounds: ascending upper bounds in seconds; +Inf is implicit. */
    explicit Histogram(std::vector<double> bounds);
    void observe(double seconds);
    const std::vector<double>& bounds() const { return m_bounds; }
    /** Per-bucket (not cumulative) counts; the last one is the +Inf bucket. */
    const std::vector<std::uint64_t>& counts() const { return m_counts; }
    double sum() const { return m_sum; }
    std::uint64_t count() const { return m_count; }

private:
    std::vector<double> m_bounds;
    std::vector<std::uint64_t> m_counts;
    double m_sum = 0;
    std::uint64_t m_count = 0;
};

/** Buckets for store requests (etcd answers in ms; the request timeout is at most 2 s). */
std::vector<double> storeLatencyBuckets();
/** Buckets for action runs (a check takes ms, starting a service can take a minute). */
std::vector<double> actionDurationBuckets();

/** Runs, failures and durations of one kind of action (ensure-active, ensure-passive, restart-prom). */
struct ActionStats {
    std::uint64_t runs = 0;
    std::uint64_t failures = 0;
    Histogram durations{actionDurationBuckets()};
};

/** Counters the daemon keeps for the lifetime of the process. */
struct Counters {
    std::uint64_t transitions = 0;  ///< role changes
    std::map<std::string, ActionStats> actions;
    Histogram storeLatency{storeLatencyBuckets()};

    /** Records one finished action run (cancelled runs are not runs of the action's logic). */
    void actionFinished(const std::string& kind, bool ok, double seconds);
    /** Records the round-trip time of one store request that got an answer (success or error). */
    void storeReply(double seconds) { storeLatency.observe(seconds); }
};

/** The state of one replica daemon at the moment of a request. */
struct Snapshot {
    std::string app;
    std::string replica;
    std::string version;
    bool running = true;  ///< false once prom is stopping
    std::string role = "starting";
    std::string leader;  ///< replica id of the active, "" when none is known
    std::uint64_t fencingToken = 0;
    bool storeHealthy = false;
    bool paused = false;
    /** CLOCK_REALTIME µs since the last error (LastErrorUSec on D-Bus); 0 when there is none. */
    std::uint64_t lastErrorUSec = 0;
    /** Time left before the active demotes on its own clock (lease deadline); none when not active. */
    std::optional<double> leaseRemainingSeconds;
    Counters counters;
};

enum class Format { Prometheus, OpenMetrics };

/** The /metrics body. */
std::string renderMetrics(const Snapshot& s, Format format);
/** Content-Type of renderMetrics output. */
const char* contentType(Format format);
/** The format a scraper asked for in its Accept header (OpenMetrics when it names it). */
Format negotiate(const char* accept);

}  // namespace prom::http

#include "http/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace prom::http {
namespace {

// Prometheus exposition formats (prometheus.io/docs/instrumenting/exposition_formats,
// OpenMetrics 1.0): label values escape \ " and newline; HELP escapes \ and newline.
std::string escapeLabel(const std::string& v) {
    std::string out;
    for (char ch : v) {
        if (ch == '\\')
            out += "\\\\";
        else if (ch == '"')
            out += "\\\"";
        else if (ch == '\n')
            out += "\\n";
        else
            out += ch;
    }
    return out;
}

std::string number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    // Shortest form that reads back the same: 0.005 rather than 0.0050000000000000001.
    for (int precision = 1; precision < 17; ++precision) {
        char shorter[32];
        std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
        if (std::strtod(shorter, nullptr) == v) return shorter;
    }
    return buf;
}

std::string integer(std::uint64_t v) {
    return std::to_string(v);
}

class Writer {
public:
    explicit Writer(Format f) : m_format(f) {}

    /** # HELP and # TYPE of a family; counters are named without _total in OpenMetrics. */
    void family(const std::string& name, const char* type, const std::string& help) {
        std::string family = name;
        if (m_format == Format::OpenMetrics && std::string(type) == "counter" && family.ends_with("_total"))
            family.resize(family.size() - 6);
        if (m_format == Format::OpenMetrics && std::string(type) == "info" && family.ends_with("_info"))
            family.resize(family.size() - 5);
        const char* shown = m_format == Format::Prometheus && std::string(type) == "info" ? "gauge" : type;
        m_out += "# HELP " + family + " " + help + "\n# TYPE " + family + " " + shown + "\n";
    }

    void sample(const std::string& name, const std::vector<std::pair<std::string, std::string>>& labels,
                const std::string& value) {
        m_out += name;
        if (!labels.empty()) {
            m_out += "{";
            for (std::size_t i = 0; i < labels.size(); ++i)
                m_out += (i ? "," : "") + labels[i].first + "=\"" + escapeLabel(labels[i].second) + "\"";
            m_out += "}";
        }
        m_out += " " + value + "\n";
    }

    void histogram(const std::string& name, const std::vector<std::pair<std::string, std::string>>& labels,
                   const Histogram& h) {
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= h.bounds().size(); ++i) {
            cumulative += h.counts()[i];
            auto l = labels;
            l.emplace_back("le", i < h.bounds().size() ? number(h.bounds()[i]) : "+Inf");
            sample(name + "_bucket", l, integer(cumulative));
        }
        sample(name + "_sum", labels, number(h.sum()));
        sample(name + "_count", labels, integer(h.count()));
    }

    std::string finish() {
        if (m_format == Format::OpenMetrics) m_out += "# EOF\n";
        return std::move(m_out);
    }

private:
    Format m_format;
    std::string m_out;
};

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : m_bounds(std::move(bounds)), m_counts(m_bounds.size() + 1, 0) {}

void Histogram::observe(double seconds) {
    auto it = std::lower_bound(m_bounds.begin(), m_bounds.end(), seconds);
    ++m_counts[static_cast<std::size_t>(it - m_bounds.begin())];
    m_sum += seconds;
    ++m_count;
}

std::vector<double> storeLatencyBuckets() {
    return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
}
std::vector<double> actionDurationBuckets() {
    return {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

void Counters::actionFinished(const std::string& kind, bool ok, double seconds) {
    ActionStats& a = actions[kind];
    ++a.runs;
    if (!ok) ++a.failures;
    a.durations.observe(seconds);
}

std::string renderMetrics(const Snapshot& s, Format format) {
    static const char* const kRoles[] = {"starting", "passive", "promoting", "active", "demoting", "stopping"};
    Writer w(format);
    w.family("prom_build_info", "info", "prom version, application and replica of this daemon.");
    w.sample("prom_build_info", {{"app", s.app}, {"replica", s.replica}, {"version", s.version}}, "1");
    w.family("prom_role", "gauge", "1 for the role this replica is in, 0 for the others.");
    for (const char* r : kRoles) w.sample("prom_role", {{"role", r}}, s.role == r ? "1" : "0");
    w.family("prom_active", "gauge", "1 while this replica is active.");
    w.sample("prom_active", {}, s.role == "active" ? "1" : "0");
    w.family("prom_fencing_token", "gauge",
             "Fencing token (leader key create revision) of the current or last active known.");
    w.sample("prom_fencing_token", {}, integer(s.fencingToken));
    w.family("prom_role_transitions_total", "counter", "Role changes of this replica since prom started.");
    w.sample("prom_role_transitions_total", {}, integer(s.counters.transitions));
    w.family("prom_store_healthy", "gauge", "1 when the last store request got an answer.");
    w.sample("prom_store_healthy", {}, s.storeHealthy ? "1" : "0");
    w.family("prom_paused", "gauge", "1 while this replica is paused (no actions, no campaigns).");
    w.sample("prom_paused", {}, s.paused ? "1" : "0");
    // A timestamp, not an age, as Prometheus advises (time() - x is the age in PromQL and stays
    // right between scrapes); always present, 0 without an error, so alerts need no absent().
    w.family("prom_last_error_timestamp_seconds", "gauge",
             "When the current last error (D-Bus LastError) first appeared, in seconds since the epoch; 0 when there "
             "is none.");
    w.sample("prom_last_error_timestamp_seconds", {}, number(static_cast<double>(s.lastErrorUSec) / 1e6));
    w.family("prom_lease_remaining_seconds", "gauge",
             "Time left before the active demotes itself on its own clock unless a keepalive is acknowledged (active "
             "only).");
    if (s.leaseRemainingSeconds)
        w.sample("prom_lease_remaining_seconds", {}, number(std::max(0.0, *s.leaseRemainingSeconds)));
    w.family("prom_action_runs_total", "counter", "Finished runs of each action.");
    for (const auto& [kind, a] : s.counters.actions)
        w.sample("prom_action_runs_total", {{"action", kind}}, integer(a.runs));
    w.family("prom_action_failures_total", "counter", "Runs of each action that failed or timed out.");
    for (const auto& [kind, a] : s.counters.actions)
        w.sample("prom_action_failures_total", {{"action", kind}}, integer(a.failures));
    w.family("prom_action_duration_seconds", "histogram", "Duration of action runs.");
    for (const auto& [kind, a] : s.counters.actions)
        w.histogram("prom_action_duration_seconds", {{"action", kind}}, a.durations);
    w.family("prom_store_request_duration_seconds", "histogram",
             "Round-trip time of store requests that got an answer.");
    w.histogram("prom_store_request_duration_seconds", {}, s.counters.storeLatency);
    return w.finish();
}

const char* contentType(Format format) {
    return format == Format::OpenMetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                         : "text/plain; version=0.0.4; charset=utf-8";
}

Format negotiate(const char* accept) {
    return accept && std::string(accept).find("application/openmetrics-text") != std::string::npos ? Format::OpenMetrics
                                                                                                   : Format::Prometheus;
}

}  // namespace prom::http

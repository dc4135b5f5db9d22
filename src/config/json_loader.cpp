// PROM config.json front end: every key of the PROM README, read as PROM 1.0.6 read them
// (scalars as strings or numbers, commands split on spaces), mapped onto the TOML model.
#include <map>

#include "common/json.hpp"
#include "config/config.hpp"

namespace prom::config {
namespace {

constexpr std::int64_t kMaxMillis = 24LL * 3600 * 1000;

struct JsonReader {
    const std::string& text;
    Raw& raw;
    Sink& sink;

    Location loc(std::size_t offset) const {
        auto [l, c] = json::lineColumn(text, offset);
        return {l, c};
    }

    // PROM read every scalar with String.valueOf, so "5000" and 5000 are the same.
    std::optional<std::int64_t> integer(const json::Member& m, std::int64_t min, std::int64_t max) {
        const json::Value& v = m.value;
        std::optional<std::int64_t> n;
        if (v.type == json::Type::Number || v.type == json::Type::String) n = json::parseInt(v.text);
        if (!n) {
            sink.error(loc(v.offset), "\"" + m.key + "\" must be an integer (number or string of digits), got " +
                                          (v.type == json::Type::String ? "\"" + v.text + "\"" : describe(v)));
            return std::nullopt;
        }
        if (*n < min || *n > max) {
            sink.error(loc(v.offset), "\"" + m.key + "\" = " + std::to_string(*n) + " is out of range [" +
                                          std::to_string(min) + ", " + std::to_string(max) + "]");
            return std::nullopt;
        }
        return n;
    }

    std::optional<std::string> string(const json::Member& m) {
        const json::Value& v = m.value;
        if (v.type == json::Type::String) return v.text;
        if (v.type == json::Type::Number) return v.text;
        sink.error(loc(v.offset), "\"" + m.key + "\" must be a string, not " + describe(v));
        return std::nullopt;
    }

    std::optional<std::vector<std::string>> strings(const json::Member& m) {
        const json::Value& v = m.value;
        if (v.type != json::Type::Array) {
            sink.error(loc(v.offset), "\"" + m.key + "\" must be an array of strings, not " + describe(v));
            return std::nullopt;
        }
        std::vector<std::string> out;
        for (const auto& e : v.items) {
            if (e.type != json::Type::String && e.type != json::Type::Number) {
                sink.error(loc(e.offset), "\"" + m.key + "\" must contain only strings, found " + describe(e));
                return std::nullopt;
            }
            out.push_back(e.text);
        }
        return out;
    }

    static std::string describe(const json::Value& v) {
        switch (v.type) {
            case json::Type::Null: return "null";
            case json::Type::Bool: return "a boolean";
            case json::Type::Number: return "a number";
            case json::Type::String: return "a string";
            case json::Type::Array: return "an array";
            case json::Type::Object: return "an object";
        }
        return "?";
    }
};

// PROM 1.0.6 ConfigReader.getExeCommandWithParams splits on single spaces and runs the
// result without a shell; keeping that (an argv action) keeps quoting behaviour identical.
Action promCommand(const std::string& s) {
    Action a;
    std::size_t i = 0;
    while (i < s.size()) {
        auto j = s.find(' ', i);
        if (j == std::string::npos) j = s.size();
        if (j > i) a.argv.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    if (!a.argv.empty()) a.kind = Action::Kind::Exec;
    return a;
}

bool startsWith(const std::string& s, const char* p, std::string& rest) {
    std::string pre(p);
    if (s.size() > pre.size() && s.compare(0, pre.size(), pre) == 0) {
        rest = s.substr(pre.size());
        return true;
    }
    return false;
}

}  // namespace

void parsePromJson(const std::string& text, Raw& raw, Sink& sink) {
    auto parsed = json::parse(text);
    if (auto* err = std::get_if<json::SyntaxError>(&parsed)) {
        auto [l, c] = json::lineColumn(text, err->offset);
        sink.error({l, c}, err->message);
        return;
    }
    const json::Value& root = std::get<json::Value>(parsed);
    JsonReader r{text, raw, sink};
    if (root.type != json::Type::Object) {
        sink.error(r.loc(root.offset), "a PROM config.json must be a JSON object");
        return;
    }
    Config& c = raw.config;
    c.store.backend = Backend::Music;
    c.store.endpoints.clear();
    c.actions.retryBackoff = Millis(0);  // PROM: "default to immediate retry"

    std::map<std::string, std::size_t> seen;
    std::optional<std::int64_t> connectTimeout;
    bool haveTimeout = false, haveRetries = false, haveReplicas = false, haveLocations = false, haveApp = false;
    auto note = [&](const std::string& dotted, const json::Member& m) {
        c.where[dotted] = r.loc(m.keyOffset);
        raw.spelled[dotted] = "\"" + m.key + "\"";
    };
    for (const auto& m : root.members) {
        if (auto it = seen.find(m.key); it != seen.end()) {
            auto first = r.loc(it->second);
            sink.error(r.loc(m.keyOffset), "duplicate key \"" + m.key + "\" (first given at line " +
                                               std::to_string(first.line) + ", column " + std::to_string(first.column) + ")");
            continue;
        }
        seen[m.key] = m.keyOffset;
        std::string id;
        if (m.key == "app-name") {
            note("app-name", m);
            if (auto s = r.string(m)) c.appName = *s, haveApp = true;
        } else if (m.key == "aid") {
            note("store.aid", m);
            if (auto s = r.string(m)) c.store.aid = *s;
        } else if (m.key == "namespace") {
            note("store.namespace", m);
            if (auto s = r.string(m)) c.store.ns = *s;
        } else if (m.key == "userid") {
            note("store.userid", m);
            if (auto s = r.string(m)) c.store.userid = *s;
        } else if (m.key == "password") {
            note("store.password", m);
            if (auto s = r.string(m)) c.store.password = *s;
        } else if (m.key == "prom-timeout") {
            note("election.timeout-ms", m);
            if (auto n = r.integer(m, 1, kMaxMillis)) c.election.timeout = Millis(*n), haveTimeout = true;
        } else if (m.key == "restart-backoff-time") {
            note("actions.retry-backoff-ms", m);
            if (auto n = r.integer(m, 0, kMaxMillis)) c.actions.retryBackoff = Millis(*n);
        } else if (m.key == "core-monitor-sleep-time") {
            note("election.monitor-interval-ms", m);
            if (auto n = r.integer(m, 0, kMaxMillis)) {
                if (*n == 0) {
                    // PROM's 0 meant a busy loop; prom ticks at its smallest sensible interval.
                    sink.warning(r.loc(m.value.offset), "\"core-monitor-sleep-time\" = 0 (a busy loop in PROM) is taken as 100 ms");
                    c.election.monitorInterval = Millis(100);
                } else {
                    c.election.monitorInterval = Millis(*n);
                }
            }
        } else if (m.key == "no-of-retry-attempts") {
            note("actions.retry-attempts", m);
            if (auto n = r.integer(m, 0, 1000)) {
                if (*n == 0)
                    sink.error(r.loc(m.value.offset), "\"no-of-retry-attempts\" = 0 would never run an ensure script (PROM treats it as a failure); use at least 1");
                else
                    c.actions.retryAttempts = *n, haveRetries = true;
            }
        } else if (m.key == "replica-id-list") {
            note("replicas", m);
            if (auto v = r.strings(m)) c.replicas = *v, haveReplicas = true;
        } else if (m.key == "music-location") {
            note("store.endpoints", m);
            if (auto v = r.strings(m)) c.store.endpoints = *v, haveLocations = true;
        } else if (m.key == "music-version") {
            note("store.music-version", m);
            if (auto n = r.integer(m, 1, 99)) c.store.musicVersion = *n;
        } else if (m.key == "music-connection-timeout-ms") {
            note("store.connect-timeout-ms", m);
            // PROM: a value <= 0 means "prom-timeout / number of locations".
            if (auto n = r.integer(m, std::numeric_limits<std::int64_t>::min(), kMaxMillis)) connectTimeout = *n;
        } else if (startsWith(m.key, "ensure-active-", id) || startsWith(m.key, "ensure-passive-", id) ||
                   startsWith(m.key, "restart-prom-", id)) {
            std::string kind = m.key.substr(0, m.key.size() - id.size() - 1);
            note("replica." + id + "." + kind, m);
            auto s = r.string(m);
            if (!s) continue;
            Action a = promCommand(*s);
            if (a.kind == Action::Kind::None && kind != "restart-prom") {
                sink.error(r.loc(m.value.offset), "\"" + m.key + "\" is an empty command");
                continue;
            }
            ReplicaSettings& o = raw.overrides[id];
            (kind == "ensure-active" ? o.ensureActive : kind == "ensure-passive" ? o.ensurePassive : o.restartProm) = a;
            raw.overridden[id][kind] = a.kind != Action::Kind::None;
            c.where["replica." + id] = r.loc(m.keyOffset);
        } else if (startsWith(m.key, "start-active-", id)) {
            sink.warning(r.loc(m.keyOffset), "\"" + m.key + "\" is ignored (PROM never read it); start other replicas with --passive or use [replica." +
                                                 id + "] priority in prom.conf");
        } else {
            sink.error(r.loc(m.keyOffset), "unknown key \"" + m.key + "\" in a PROM config.json");
        }
    }
    // Where PROM crashed on a missing key (NumberFormatException, NullPointerException),
    // prom names the key instead.
    Location top = r.loc(root.offset);
    if (!haveApp) sink.error(top, "missing \"app-name\" (PROM would use the keyspace prom_null)");
    if (!haveTimeout) sink.error(top, "missing \"prom-timeout\" (milliseconds; PROM has no default)");
    if (!haveRetries) sink.error(top, "missing \"no-of-retry-attempts\" (PROM has no default)");
    if (!haveReplicas) sink.error(top, "missing \"replica-id-list\"");
    if (!haveLocations) sink.error(top, "missing \"music-location\" (a list of MUSIC hosts)");
    c.election.demoteMargin = c.election.timeout / 4;
    if (haveLocations && !c.store.endpoints.empty()) {
        if (!connectTimeout || *connectTimeout <= 0)
            c.store.connectTimeout = std::max(Millis(1), c.election.timeout / static_cast<long>(c.store.endpoints.size()));
        else
            c.store.connectTimeout = Millis(*connectTimeout);
    }
}

}  // namespace prom::config

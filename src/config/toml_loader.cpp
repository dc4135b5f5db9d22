// TOML front end (toml++): every key of prom.conf(5), with its location for messages.
#include <toml++/toml.h>

#include <limits>

#include "config/config.hpp"

namespace prom::config {
namespace {

// Durations above a day are certainly a unit mistake and would overflow deadline arithmetic.
constexpr std::int64_t kMaxMillis = 24LL * 3600 * 1000;

Location at(const toml::node& n) {
    const auto& b = n.source().begin;
    return {static_cast<int>(b.line), static_cast<int>(b.column)};
}

const char* typeName(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a float";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::array: return "an array";
        case toml::node_type::table: return "a table";
        default: return "a date/time";
    }
}

class Reader {
public:
    Reader(Raw& raw, Sink& sink) : m_raw(raw), m_sink(sink) {}

    void string(const toml::table& t, const std::string& table, const char* key, std::string& out, bool nonEmpty = false) {
        const toml::node* n = t.get(key);
        if (!n) return;
        auto path = dotted(table, key);
        m_raw.config.where[path] = at(*n);
        if (auto v = n->value<std::string>()) {
            if (nonEmpty && v->empty()) return m_sink.error(at(*n), path + " must not be empty");
            out = *v;
        } else {
            m_sink.error(at(*n), path + " must be a string, not " + typeName(*n));
        }
    }

    void integer(const toml::table& t, const std::string& table, const char* key, std::int64_t& out, std::int64_t min,
                 std::int64_t max) {
        const toml::node* n = t.get(key);
        if (!n) return;
        auto path = dotted(table, key);
        m_raw.config.where[path] = at(*n);
        if (!n->is_integer()) return m_sink.error(at(*n), path + " must be an integer, not " + typeName(*n));
        std::int64_t v = *n->value<std::int64_t>();
        if (v < min || v > max)
            return m_sink.error(at(*n), path + " = " + std::to_string(v) + " is out of range [" + std::to_string(min) +
                                            ", " + std::to_string(max) + "]");
        out = v;
    }

    void millis(const toml::table& t, const std::string& table, const char* key, Millis& out, std::int64_t min) {
        std::int64_t v = out.count();
        integer(t, table, key, v, min, kMaxMillis);
        out = Millis(v);
    }

    void boolean(const toml::table& t, const std::string& table, const char* key, bool& out) {
        const toml::node* n = t.get(key);
        if (!n) return;
        auto path = dotted(table, key);
        m_raw.config.where[path] = at(*n);
        if (auto v = n->value<bool>())
            out = *v;
        else
            m_sink.error(at(*n), path + " must be true or false, not " + typeName(*n));
    }

    void stringArray(const toml::table& t, const std::string& table, const char* key, std::vector<std::string>& out) {
        const toml::node* n = t.get(key);
        if (!n) return;
        auto path = dotted(table, key);
        m_raw.config.where[path] = at(*n);
        const toml::array* a = n->as_array();
        if (!a) return m_sink.error(at(*n), path + " must be an array of strings, not " + typeName(*n));
        std::vector<std::string> v;
        for (const auto& e : *a) {
            if (auto s = e.value<std::string>())
                v.push_back(*s);
            else
                return m_sink.error(at(e), path + " must contain only strings, found " + typeName(e));
        }
        out = std::move(v);
    }

    bool action(const toml::table& t, const std::string& table, const char* key, Action& out) {
        const toml::node* n = t.get(key);
        if (!n) return false;
        auto path = dotted(table, key);
        m_raw.config.where[path] = at(*n);
        Action a;
        if (auto s = n->value<std::string>()) {
            if (s->find_first_not_of(" \t") == std::string::npos)
                return m_sink.error(at(*n), path + " is an empty command"), false;
            a.kind = Action::Kind::Shell;
            a.command = *s;
        } else if (const toml::array* arr = n->as_array()) {
            if (arr->empty()) return m_sink.error(at(*n), path + " is an empty argv array"), false;
            a.kind = Action::Kind::Exec;
            for (const auto& e : *arr) {
                auto s2 = e.value<std::string>();
                if (!s2) return m_sink.error(at(e), path + " argv must contain only strings, found " + typeName(e)), false;
                a.argv.push_back(*s2);
            }
            if (a.argv[0].empty()) return m_sink.error(at(*n), path + " has an empty program name"), false;
        } else if (const toml::table* tab = n->as_table()) {
            for (const auto& [k, v] : *tab) {
                std::string name(k.str());
                if (name != "start-unit" && name != "stop-unit")
                    return m_sink.error(at(v), path + ": unknown key '" + name + "' (expected start-unit or stop-unit)"), false;
            }
            if (tab->size() != 1)
                return m_sink.error(at(*n), path + " must hold exactly one of start-unit or stop-unit"), false;
            for (const auto& [k, v] : *tab) {
                auto unit = v.value<std::string>();
                if (!unit || unit->empty())
                    return m_sink.error(at(v), path + "." + std::string(k.str()) + " must be a non-empty unit name"), false;
                a.kind = k.str() == "start-unit" ? Action::Kind::StartUnit : Action::Kind::StopUnit;
                a.unit = *unit;
            }
        } else {
            return m_sink.error(at(*n), path + " must be a command string, an argv array or a table {start-unit|stop-unit = UNIT}, not " +
                                            typeName(*n)),
                   false;
        }
        out = std::move(a);
        return true;
    }

    void unknownKeys(const toml::table& t, const std::string& table, std::initializer_list<std::string_view> known) {
        for (const auto& [k, v] : t) {
            bool ok = false;
            for (auto name : known) ok = ok || k.str() == name;
            if (!ok) m_sink.error(at(v), "unknown key '" + dotted(table, std::string(k.str())) + "'");
        }
    }

    static std::string dotted(const std::string& table, const std::string& key) {
        return table.empty() ? key : table + "." + key;
    }

private:
    Raw& m_raw;
    Sink& m_sink;
};

// ---- fast mode keys (owned with the fast-mode feature; checks in validate.cpp validateFastMode) ----

void parseFastModeElection(Reader& r, const toml::table& e, Config& c, Sink& sink) {
    std::string mode = "lease";
    r.string(e, "election", "mode", mode);
    if (mode == "lease")
        c.election.mode = ElectionSettings::Mode::Lease;
    else if (mode == "fast")
        c.election.mode = ElectionSettings::Mode::Fast;
    else
        sink.error(c.locate("election.mode"), "election.mode = \"" + mode + "\" is unknown (expected \"lease\" or \"fast\")");
    r.millis(e, "election", "heartbeat-ms", c.election.heartbeat, 1);
    r.millis(e, "election", "support-ms", c.election.support, 1);
    r.string(e, "election", "peer-key-file", c.election.peerKeyFile);
}

void parseFastModeReplica(Reader& r, const toml::table& t, const std::string& table, ReplicaSettings& o,
                          std::map<std::string, bool>& set) {
    set["address"] = t.contains("address");
    set["witness"] = t.contains("witness");
    r.string(t, table, "address", o.address);
    r.boolean(t, table, "witness", o.witness);
}

}  // namespace

void parseToml(const std::string& text, Raw& raw, Sink& sink) {
    toml::table root;
    try {
        root = toml::parse(text, sink.path);
    } catch (const toml::parse_error& e) {
        const auto& b = e.source().begin;
        sink.error({static_cast<int>(b.line), static_cast<int>(b.column)}, std::string(e.description()));
        return;
    }
    Reader r(raw, sink);
    Config& c = raw.config;
    r.unknownKeys(root, "", {"app-name", "replicas", "store", "election", "actions", "http", "replica"});
    r.string(root, "", "app-name", c.appName);
    r.stringArray(root, "", "replicas", c.replicas);

    auto section = [&](const char* name) -> const toml::table* {
        const toml::node* n = root.get(name);
        if (!n) return nullptr;
        c.where[name] = at(*n);
        if (!n->is_table()) {
            sink.error(at(*n), std::string(name) + " must be a table ([" + name + "]), not " + typeName(*n));
            return nullptr;
        }
        return n->as_table();
    };

    if (const toml::table* s = section("store")) {
        r.unknownKeys(*s, "store", {"backend", "endpoints", "prefix", "connect-timeout-ms", "music-version", "aid",
                                    "namespace", "userid", "music-auth", "password-file", "ca-file", "cert-file", "key-file"});
        std::string backend = "etcd";
        r.string(*s, "store", "backend", backend);
        if (backend == "etcd")
            c.store.backend = Backend::Etcd;
        else if (backend == "music")
            c.store.backend = Backend::Music;
        else
            sink.error(c.locate("store.backend"), "store.backend = \"" + backend + "\" is unknown (expected \"etcd\" or \"music\")");
        r.stringArray(*s, "store", "endpoints", c.store.endpoints);
        r.string(*s, "store", "prefix", c.store.prefix);
        r.millis(*s, "store", "connect-timeout-ms", c.store.connectTimeout, 1);
        r.integer(*s, "store", "music-version", c.store.musicVersion, 1, 99);
        r.string(*s, "store", "aid", c.store.aid);
        r.string(*s, "store", "namespace", c.store.ns);
        r.string(*s, "store", "userid", c.store.userid);
        std::string auth = "basic";
        r.string(*s, "store", "music-auth", auth);
        if (auth == "basic" || auth == "headers")
            c.store.musicBasicAuth = auth == "basic";
        else
            sink.error(c.locate("store.music-auth"), "store.music-auth = \"" + auth + "\" is unknown (expected \"basic\" for MUSIC 3.x or \"headers\" for MUSIC 2.5)");
        r.string(*s, "store", "password-file", c.store.passwordFile);
        r.string(*s, "store", "ca-file", c.store.caFile);
        r.string(*s, "store", "cert-file", c.store.certFile);
        r.string(*s, "store", "key-file", c.store.keyFile);
    }
    bool marginSet = false;
    if (const toml::table* e = section("election")) {
        r.unknownKeys(*e, "election", {"timeout-ms", "monitor-interval-ms", "start-passive", "demote-margin-ms", "mode",
                                       "heartbeat-ms", "support-ms", "peer-key-file"});
        r.millis(*e, "election", "timeout-ms", c.election.timeout, 1);
        r.millis(*e, "election", "monitor-interval-ms", c.election.monitorInterval, 1);
        r.boolean(*e, "election", "start-passive", c.election.startPassive);
        marginSet = e->contains("demote-margin-ms");
        r.millis(*e, "election", "demote-margin-ms", c.election.demoteMargin, 1);
        parseFastModeElection(r, *e, c, sink);
    }
    if (!marginSet) c.election.demoteMargin = c.election.timeout / 4;
    if (const toml::table* a = section("actions")) {
        r.unknownKeys(*a, "actions", {"retry-attempts", "retry-backoff-ms", "timeout-ms", "ensure-active", "ensure-passive",
                                      "restart-prom"});
        r.integer(*a, "actions", "retry-attempts", c.actions.retryAttempts, 1, 1000);
        r.millis(*a, "actions", "retry-backoff-ms", c.actions.retryBackoff, 0);
        r.millis(*a, "actions", "timeout-ms", c.actions.timeout, 1);
        r.action(*a, "actions", "ensure-active", c.defaults.ensureActive);
        r.action(*a, "actions", "ensure-passive", c.defaults.ensurePassive);
        r.action(*a, "actions", "restart-prom", c.defaults.restartProm);
    }
    if (const toml::table* h = section("http")) {
        r.unknownKeys(*h, "http", {"listen"});
        r.string(*h, "http", "listen", c.http.listen);
    }
    if (const toml::table* reps = section("replica")) {
        for (const auto& [k, v] : *reps) {
            std::string id(k.str());
            std::string table = "replica." + id;
            c.where[table] = at(v);
            const toml::table* t = v.as_table();
            if (!t) {
                sink.error(at(v), "[" + table + "] must be a table, not " + typeName(v));
                continue;
            }
            r.unknownKeys(*t, table, {"ensure-active", "ensure-passive", "restart-prom", "priority", "http-listen", "address", "witness"});
            ReplicaSettings& o = raw.overrides[id];
            auto& set = raw.overridden[id];
            set["ensure-active"] = r.action(*t, table, "ensure-active", o.ensureActive);
            set["ensure-passive"] = r.action(*t, table, "ensure-passive", o.ensurePassive);
            set["restart-prom"] = r.action(*t, table, "restart-prom", o.restartProm);
            r.integer(*t, table, "priority", o.priority, -1000000, 1000000);
            set["http-listen"] = t->contains("http-listen");
            r.string(*t, table, "http-listen", o.httpListen);
            parseFastModeReplica(r, *t, table, o, set);
        }
    }
}

}  // namespace prom::config

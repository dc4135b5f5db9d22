#pragma once
// The validated configuration of one prom deployment (same file on every node), from TOML
// (/etc/prom/prom.conf, prom.conf(5)) or from a PROM config.json.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace prom::config {

using Millis = std::chrono::milliseconds;

enum class Backend { Etcd, Music };

/** One ensure-active / ensure-passive / restart-prom action. */
struct Action {
    enum class Kind { None, Shell, Exec, StartUnit, StopUnit };
    Kind kind = Kind::None;
    std::string command;            ///< Shell: run with /bin/sh -c
    std::vector<std::string> argv;  ///< Exec: run directly, no shell
    std::string unit;               ///< StartUnit / StopUnit
    bool operator==(const Action&) const = default;
    /** Human-readable form for logs. */
    std::string describe() const;
    /** Copy with every %i replaced by the replica id. */
    Action expanded(const std::string& replicaId) const;
};

/** Settings of one replica after [replica.ID] overrides were applied to [actions]. */
struct ReplicaSettings {
    Action ensureActive;
    Action ensurePassive;
    Action restartProm;
    std::int64_t priority = 0;
    /** Where this replica serves /health, /active and /metrics: "HOST:PORT", "" = off
     *  ([replica.ID] http-listen, else [http] listen). */
    std::string httpListen;
    // fast mode ([replica.ID] address / witness)
    std::string address;   ///< UDP "host:port" of this replica's peer transport
    bool witness = false;  ///< votes only: never campaigns, runs no actions
    bool operator==(const ReplicaSettings&) const = default;
};

struct StoreSettings {
    Backend backend = Backend::Etcd;
    std::vector<std::string> endpoints{"http://127.0.0.1:2379"};
    std::string prefix = "/prom";
    Millis connectTimeout{1000};
    std::int64_t musicVersion = 2;
    std::string aid;
    std::string ns;
    std::string userid;
    bool musicBasicAuth = true;  ///< music-auth: "basic" (MUSIC 3.x) or "headers" (2.5 userId/password)
    std::string passwordFile;
    std::string password;  ///< only from a PROM config.json, which keeps it inline
    std::string caFile;
    std::string certFile;
    std::string keyFile;
    bool operator==(const StoreSettings&) const = default;
};

struct ElectionSettings {
    Millis timeout{5000};
    Millis monitorInterval{1000};
    bool startPassive = false;
    Millis demoteMargin{1250};
    // fast mode (prom.conf(5) FAST MODE, prom(8) FAST MODE)
    enum class Mode { Lease, Fast };
    Mode mode = Mode::Lease;
    Millis heartbeat{50};  ///< heartbeat-ms (tuned deployments: 25)
    Millis support{400};   ///< support-ms (tuned deployments: 200)
    std::string peerKeyFile;
    bool operator==(const ElectionSettings&) const = default;
};

struct ActionSettings {
    std::int64_t retryAttempts = 3;
    Millis retryBackoff{1000};
    Millis timeout{30000};
    bool operator==(const ActionSettings&) const = default;
};

struct HttpSettings {
    std::string listen = "127.0.0.1:9479";  ///< [http] listen; "" = off
    bool operator==(const HttpSettings&) const = default;
};

/** A parsed listen address: an IPv4 or IPv6 literal and a port. */
struct ListenAddress {
    std::string host;  ///< "127.0.0.1", "::1" (without brackets)
    std::uint16_t port = 0;
    bool ipv6 = false;
};
/** Parses "IPV4:PORT" or "[IPV6]:PORT"; nullopt (with why) when it is neither. */
std::optional<ListenAddress> parseListenAddress(const std::string& text, std::string* why = nullptr);

/** Where a key was written, for PATH:LINE:COLUMN messages. */
struct Location {
    int line = 1;
    int column = 1;
};

struct Config {
    std::string path;  ///< the file actually read
    std::string appName;
    std::vector<std::string> replicas;
    StoreSettings store;
    ElectionSettings election;
    ActionSettings actions;
    HttpSettings http;
    ReplicaSettings defaults;                         ///< [actions] ensure-*/restart-prom
    std::map<std::string, ReplicaSettings> replica;   ///< every replica, overrides applied, %i expanded
    std::map<std::string, Location> where;            ///< dotted key path -> location

    /** Settings of one replica id (must be in replicas). */
    const ReplicaSettings& settingsOf(const std::string& id) const { return replica.at(id); }
    /** Location of a dotted key, or of the file start when it was not written. */
    Location locate(const std::string& key) const;
    bool operator==(const Config& o) const {
        return appName == o.appName && replicas == o.replicas && store == o.store && election == o.election &&
               actions == o.actions && http == o.http && replica == o.replica;
    }
};

/** One problem found in a configuration file. */
struct Diagnostic {
    enum class Severity { Error, Warning };
    Severity severity = Severity::Error;
    std::string path;
    Location at;
    std::string message;
    /** "PATH:LINE:COLUMN: [warning: ]message" */
    std::string format() const;
};

struct LoadResult {
    std::optional<Config> config;  ///< set when there is no error (warnings allowed)
    std::vector<Diagnostic> diagnostics;
    bool hasErrors() const;
};

/** Whether validation also looks at this host (action programs, TLS and password files). */
enum class HostChecks { Run, Skip };

/** Reads PATH (TOML file, PROM config.json, or a directory holding config.json) and validates it;
 *  selfId, when not empty, must be one of the replicas. */
LoadResult load(const std::string& path, const std::string& selfId = "", HostChecks checks = HostChecks::Run);

/** A small file's content (a secret, the lease file) without the trailing newline ("" when
 *  unreadable). */
std::string readTrimmedFile(const std::string& path);
/** The store password as prom uses it: password-file, else the systemd credential
 *  store-password when present, else the password inline in a PROM config.json. */
std::string storePassword(const StoreSettings& s);

/** Loads text that was read from path (the format is chosen by the name: *.json is PROM JSON). */
LoadResult loadText(const std::string& path, const std::string& text, const std::string& selfId = "",
                    HostChecks checks = HostChecks::Run);

// Internals shared by the loaders (also unit-tested).
struct Sink {
    std::string path;
    std::vector<Diagnostic> diagnostics;
    void error(Location at, std::string message) {
        diagnostics.push_back({Diagnostic::Severity::Error, path, at, std::move(message)});
    }
    void warning(Location at, std::string message) {
        diagnostics.push_back({Diagnostic::Severity::Warning, path, at, std::move(message)});
    }
};
/** A config with keys as written, before replica settings are resolved. */
struct Raw {
    Config config;
    std::map<std::string, ReplicaSettings> overrides;  ///< [replica.ID] as written
    std::map<std::string, std::map<std::string, bool>> overridden;  ///< which keys an override sets
    std::map<std::string, std::string> spelled;  ///< dotted key -> name as written (PROM JSON names)
    HostChecks hostChecks = HostChecks::Run;
    /** The key as the operator wrote it, for messages. */
    std::string name(const std::string& dotted) const {
        auto it = spelled.find(dotted);
        return it == spelled.end() ? dotted : it->second;
    }
};
void parseToml(const std::string& text, Raw& raw, Sink& sink);
void parsePromJson(const std::string& text, Raw& raw, Sink& sink);
/** Resolves replica settings and applies the cross-field rules, then checks what the settings
 *  point at on this host (action programs, TLS and password files; see checkHost). */
void validate(Raw& raw, const std::string& selfId, Sink& sink);
/** The host checks of validate(): action programs that exist and are executable (for selfId's
 *  actions and the restart-prom of its peers, or every replica's when selfId is empty), TLS and
 *  password files that can be read. Separate so that tests can run it on a Config alone. */
void checkHost(const Raw& raw, const std::string& selfId, Sink& sink);

/** Whether a replica id is in the safe set of prom.conf(5): 1-64 of [A-Za-z0-9_.-], not
 *  starting with '.' or '-' (it becomes a file name, a unit instance and a bus name). */
bool isSafeReplicaId(const std::string& id);
/** The bus-name form of a replica id (DESIGN.md): characters outside [A-Za-z0-9_] become '_'. */
std::string busSafeId(const std::string& id);
/** Why name is not a unit name StartUnit/StopUnit accept, or "" when it is one. */
std::string unitNameProblem(const std::string& name);
/** The program a shell command runs first (PATH not yet applied), or "" when that cannot be told
 *  without running the shell (builtins, keywords, expansions, redirections first). */
std::string shellProgram(const std::string& command);
/** The lease TTL etcd will be asked for: timeout rounded up to whole seconds. */
std::int64_t leaseTtlSeconds(const ElectionSettings& e);

}  // namespace prom::config

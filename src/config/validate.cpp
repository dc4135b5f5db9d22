// Cross-field rules an operator would otherwise learn in production, and the host checks of
// prom --check-config (action programs, unit names, TLS and password files).
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "common/text.hpp"
#include "config/config.hpp"
#include "core/election.hpp"

namespace prom::config {
namespace {

bool allIn(const std::string& s, const std::string& extra) {
    for (unsigned char ch : s)
        if (!std::isalnum(ch) && extra.find(static_cast<char>(ch)) == std::string::npos) return false;
    return !s.empty();
}

std::string ms(Millis m) {
    return std::to_string(m.count()) + " ms";
}

// Config values end up in the message; a control character in them must not reach a terminal.
std::string printable(const std::string& s) {
    return text::sanitize(s, 4096);
}

/** The location of the first of keys that was written (1:1 when none was). */
Location locateFirst(const Config& c, std::initializer_list<const char*> keys) {
    for (const char* k : keys)
        if (c.where.count(k)) return c.locate(k);
    return {};
}

// ---- URLs ----

struct UrlParts {
    std::string scheme;  ///< "http", "https", or "" when there is no "://"
    std::string userinfo;
    std::string host;  ///< without port and brackets
};

UrlParts splitUrl(const std::string& url) {
    UrlParts u;
    auto sep = url.find("://");
    if (sep == std::string::npos) return u;
    u.scheme = url.substr(0, sep);
    std::string authority = url.substr(sep + 3, url.find_first_of("/?#", sep + 3) - (sep + 3));
    if (auto at = authority.rfind('@'); at != std::string::npos) {
        u.userinfo = authority.substr(0, at);
        authority = authority.substr(at + 1);
    }
    if (authority.starts_with("["))
        u.host = authority.substr(1, authority.find(']') - 1);
    else
        u.host = authority.substr(0, authority.find(':'));
    return u;
}

bool hasUserinfo(const std::string& url) {
    return !splitUrl(url).userinfo.empty();
}

bool isLoopback(const std::string& host) {
    return host == "localhost" || host.starts_with("127.") || host == "::1";
}

// ---- replica ids ----

void validateReplicaIds(const Raw& raw, Sink& sink, std::set<std::string>& ids) {
    const Config& c = raw.config;
    std::map<std::string, std::string> byBusName;
    for (const auto& id : c.replicas) {
        if (!isSafeReplicaId(id)) {
            sink.error(c.locate("replicas"),
                       "replica id \"" + printable(id) +
                           "\" is not allowed: use 1-64 letters, digits, _ . and -, not starting with . or - "
                           "(the id becomes a file name, a systemd instance and part of a D-Bus name)");
        } else if (!ids.insert(id).second) {
            sink.error(c.locate("replicas"), "replica id \"" + id + "\" is listed twice in " + raw.name("replicas"));
        } else if (auto [it, fresh] = byBusName.emplace(busSafeId(id), id); !fresh) {
            sink.error(c.locate("replicas"), "replica ids \"" + it->second + "\" and \"" + id +
                                                 "\" both map to the D-Bus name org.prom.Prom1.Replica_" + it->first +
                                                 " (characters other than letters, digits and _ become _): rename one");
        }
    }
}

// ---- timing ----

void validateTiming(const Raw& raw, Sink& sink) {
    const Config& c = raw.config;
    const auto& e = c.election;
    auto value = [&](const char* key, Millis v) {
        return " (" + ms(v) + (c.where.count(key) ? "" : ", the default") + ")";
    };
    const std::string timeoutName = raw.name("election.timeout-ms");
    const std::string monitorName = raw.name("election.monitor-interval-ms");
    const std::string marginName = raw.name("election.demote-margin-ms");
    if (e.monitorInterval >= e.timeout) {
        // Placed at the key the operator wrote: with only timeout-ms = 500 written, the fix is there.
        if (c.where.count("election.monitor-interval-ms"))
            sink.error(c.locate("election.monitor-interval-ms"),
                       monitorName + value("election.monitor-interval-ms", e.monitorInterval) +
                           " must be shorter than " + timeoutName + value("election.timeout-ms", e.timeout) +
                           ": lower " + monitorName + " or raise " + timeoutName);
        else
            sink.error(locateFirst(c, {"election.timeout-ms", "election"}),
                       timeoutName + value("election.timeout-ms", e.timeout) + " must be longer than " + monitorName +
                           value("election.monitor-interval-ms", e.monitorInterval) + ": raise " + timeoutName +
                           " or lower " + monitorName);
    }
    // The active renews its lease every TTL/3; its deadline (last acknowledged renewal + TTL -
    // margin) must leave at least one renewal period, or it would demote while healthy.
    const Millis ttl(leaseTtlSeconds(e) * 1000);
    const Millis limit = ttl - core::keepalivePeriod(ttl);
    if (e.demoteMargin >= limit) {
        std::int64_t seconds = leaseTtlSeconds(e);
        while (Millis(seconds * 1000) - core::keepalivePeriod(Millis(seconds * 1000)) <= e.demoteMargin) ++seconds;
        sink.error(locateFirst(c, {"election.demote-margin-ms", "election.timeout-ms", "election"}),
                   marginName + value("election.demote-margin-ms", e.demoteMargin) +
                       " must be shorter than two thirds of the lease TTL (" + ms(limit) + "): lower " + marginName +
                       " below " + ms(limit) + " or raise " + timeoutName + " to at least " +
                       ms(Millis(seconds * 1000)) + "; otherwise the active demotes between two healthy keepalives");
    }
    if (c.store.backend == Backend::Etcd) {
        if (e.timeout.count() % 1000 != 0)
            sink.warning(c.locate("election.timeout-ms"), timeoutName + " = " + ms(e.timeout) +
                                                              " is rounded up to a whole-second etcd lease TTL of " +
                                                              std::to_string(ttl.count() / 1000) + " s");
        if (ttl < Millis(2000))
            sink.warning(
                c.locate("election.timeout-ms"),
                "etcd grants at least ceil(1.5 x its --election-timeout) seconds (2 s by default); with default etcd "
                "settings the effective lease TTL is 2 s, and prom uses the TTL etcd grants");
    }
    // No rule ties demote-margin-ms to [actions] timeout-ms: the margin is the time ensure-passive
    // gets to finish when the active loses the store (an operator's estimate of how long stopping
    // takes), while timeout-ms only bounds a hung action of any kind, and ensure-active (starting
    // a service) often needs far longer. Comparing the two warned on every default configuration,
    // and no margin below two thirds of the TTL could silence it (prom.conf(5), demote-margin-ms).
}

// ---- store transport ----

void validateStoreTransport(const Raw& raw, Sink& sink) {
    const Config& c = raw.config;
    for (const char* key : {"store.ca-file", "store.cert-file"}) {
        const std::string& value = std::string(key) == "store.ca-file" ? c.store.caFile : c.store.certFile;
        if (value.empty()) continue;
        for (const auto& ep : c.store.endpoints)
            if (splitUrl(ep).scheme == "http")
                sink.error(c.locate(key), std::string(key) + " is set but endpoint " + text::redactUrl(ep, "***") +
                                              " is plain http://: TLS is not used (write https://)");
    }
    if (!c.store.userid.empty()) {
        for (const auto& ep : c.store.endpoints) {
            UrlParts u = splitUrl(ep);
            if (u.scheme == "http" && !isLoopback(u.host)) {
                sink.warning(c.locate("store.userid"),
                             raw.name("store.userid") + ": the password goes in clear text over plain http:// to " +
                                 printable(u.host) + ": use https:// endpoints (with store.ca-file)");
                break;
            }
        }
    }
}

// ---- actions ----

const char* const kActionKinds[] = {"ensure-active", "ensure-passive", "restart-prom"};

const Action& actionOf(const ReplicaSettings& s, const std::string& kind) {
    return kind == "ensure-active" ? s.ensureActive : kind == "ensure-passive" ? s.ensurePassive : s.restartProm;
}

/** The dotted key an action of replica id was written at: its override, else [actions]. */
std::string actionKey(const Raw& raw, const std::string& id, const std::string& kind) {
    auto it = raw.overridden.find(id);
    if (it != raw.overridden.end()) {
        auto k = it->second.find(kind);
        if (k != it->second.end() && k->second) return "replica." + id + "." + kind;
    }
    return "actions." + kind;
}

void validateUnits(const Raw& raw, Sink& sink) {
    const Config& c = raw.config;
    std::set<std::pair<std::string, std::string>> said;
    for (const auto& [id, s] : c.replica) {
        for (const char* kind : kActionKinds) {
            const Action& a = actionOf(s, kind);
            if (a.kind != Action::Kind::StartUnit && a.kind != Action::Kind::StopUnit) continue;
            std::string problem = unitNameProblem(a.unit);
            std::string key = actionKey(raw, id, kind);
            if (problem.empty() || !said.emplace(key, problem).second) continue;
            sink.error(c.locate(key), raw.name(key) + ": \"" + printable(a.unit) + "\" is not a unit name: " + problem);
        }
    }
}

std::string httpListenOf(const Raw& raw, const std::string& id) {
    auto it = raw.overridden.find(id);
    if (it != raw.overridden.end()) {
        auto k = it->second.find("http-listen");
        if (k != it->second.end() && k->second) return raw.overrides.at(id).httpListen;
    }
    return raw.config.http.listen;
}

void validateHttp(const Raw& raw, Sink& sink) {
    const Config& c = raw.config;
    auto check = [&](const std::string& key, const std::string& value) {
        std::string why;
        if (value.empty() || parseListenAddress(value, &why)) return true;
        sink.error(c.locate(key), key + " = \"" + printable(value) + "\": " + why);
        return false;
    };
    check("http.listen", c.http.listen);
    std::map<std::string, std::string> firstUser;
    for (const auto& id : c.replicas) {
        auto it = c.replica.find(id);
        if (it == c.replica.end()) continue;
        const std::string& listen = it->second.httpListen;
        const std::string key = "replica." + id + ".http-listen";
        const bool own = c.where.count(key) > 0;
        if (own && !check(key, listen)) continue;
        if (listen.empty()) continue;
        auto [first, fresh] = firstUser.emplace(listen, id);
        if (!fresh && own)
            sink.warning(c.locate(key), key + " = \"" + listen + "\" is also replica " + first->second +
                                            "'s: two replicas on one node cannot both listen there");
    }
}

enum class Search { Path, None };

struct Finding {
    Diagnostic::Severity severity = Diagnostic::Severity::Error;
    std::string text;  ///< "" = fine
};

std::string modeOf(const struct stat& st) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", st.st_mode & 07777);
    return buf;
}

Finding checkPath(const std::string& program) {
    struct stat st {};
    if (stat(program.c_str(), &st) != 0)
        return {Diagnostic::Severity::Error,
                "program " + printable(program) +
                    (errno == ENOENT ? " does not exist" : std::string(": ") + std::strerror(errno))};
    if (S_ISDIR(st.st_mode)) return {Diagnostic::Severity::Error, "program " + printable(program) + " is a directory"};
    if (!S_ISREG(st.st_mode))
        return {Diagnostic::Severity::Error, "program " + printable(program) + " is not a regular file"};
    if (access(program.c_str(), X_OK) != 0 || !(st.st_mode & 0111))
        return {Diagnostic::Severity::Error,
                "program " + printable(program) + " is not executable (mode " + modeOf(st) + ")"};
    return {};
}

std::string searchPath(const std::string& name, std::string* nonExecutable = nullptr) {
    const char* env = std::getenv("PATH");
    // execvp(3) and dash use this when PATH is unset.
    std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
    for (std::size_t begin = 0;;) {
        auto end = path.find(':', begin);
        std::string dir = path.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
        std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
        struct stat st {};
        if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(candidate.c_str(), X_OK) == 0 && (st.st_mode & 0111)) return candidate;
            if (nonExecutable && nonExecutable->empty()) *nonExecutable = candidate;
        }
        if (end == std::string::npos) return "";
        begin = end + 1;
    }
}

Finding checkProgram(const std::string& program, Search search) {
    if (program.find('/') == std::string::npos) {
        std::string nonExecutable;
        std::string found = searchPath(program, &nonExecutable);
        if (search == Search::None)
            // posix_spawn(3) of an argv action does no PATH search, unlike /bin/sh.
            return {Diagnostic::Severity::Error, "program " + printable(program) +
                                                     ": argv actions run without a PATH search: give the full path (" +
                                                     (found.empty() ? "/PATH/TO/" + printable(program) : found) + ")"};
        if (!found.empty()) return {};
        if (!nonExecutable.empty())
            return {Diagnostic::Severity::Error, "program " + printable(program) + " is found as " +
                                                     printable(nonExecutable) + ", which is not executable"};
        const char* env = std::getenv("PATH");
        return {Diagnostic::Severity::Error, "program " + printable(program) + " is not found in PATH (" +
                                                 printable(env ? env : "/usr/local/bin:/usr/bin:/bin") + ")"};
    }
    if (!program.starts_with("/"))
        return {Diagnostic::Severity::Warning,
                "program " + printable(program) +
                    " is a relative path, resolved from prom's working directory (/ under systemd): "
                    "give an absolute path"};
    return checkPath(program);
}

bool isNameChar(char ch, bool first) {
    return ch == '_' || std::isalpha(static_cast<unsigned char>(ch)) ||
           (!first && std::isdigit(static_cast<unsigned char>(ch)));
}

bool isAssignment(const std::string& word) {
    auto eq = word.find('=');
    if (eq == std::string::npos || eq == 0) return false;
    for (std::size_t i = 0; i < eq; ++i)
        if (!isNameChar(word[i], i == 0)) return false;
    return true;
}

}  // namespace

void validateFastMode(Raw& raw, Sink& sink);

bool isSafeReplicaId(const std::string& id) {
    return !id.empty() && id.size() <= 64 && allIn(id, "_.-") && id.front() != '.' && id.front() != '-';
}

std::string busSafeId(const std::string& id) {
    std::string s;
    for (unsigned char ch : id) s += (std::isalnum(ch) || ch == '_') ? static_cast<char>(ch) : '_';
    return s;
}

std::string unitNameProblem(const std::string& name) {
    // systemd.unit(5): "prefix[@instance].type", at most 255 characters of [A-Za-z0-9:_.\-] and
    // one "@"; StartUnit/StopUnit need a plain unit or an instance, not a template.
    static const std::set<std::string> types = {".service", ".socket", ".device", ".mount", ".automount", ".swap",
                                                ".target",  ".path",   ".timer",  ".slice", ".scope"};
    if (name.size() > 255) return "it is longer than 255 characters";
    auto dot = name.rfind('.');
    if (dot == std::string::npos || dot == 0 || !types.count(name.substr(dot))) {
        if (dot != std::string::npos && dot > 0 && allIn(name.substr(dot + 1), ""))
            return "unknown unit type \"" + printable(name.substr(dot)) +
                   "\" (expected .service, .target, .socket, .mount, ...)";
        return "it has no type suffix (write " + printable(name) + ".service)";
    }
    std::string prefix = name.substr(0, dot);
    for (char ch : prefix)
        if (!std::isalnum(static_cast<unsigned char>(ch)) && std::string(":-_.\\@").find(ch) == std::string::npos)
            return std::string("it contains '") + printable(std::string(1, ch)) +
                   "' (allowed: letters, digits, : - _ . \\ and one @)";
    auto at = prefix.find('@');
    if (at == std::string::npos) return "";
    if (at == 0) return "it starts with @";
    if (prefix.find('@', at + 1) != std::string::npos) return "it has more than one @";
    if (at + 1 == prefix.size())
        return "it is a template: name an instance (" + prefix + "%i" + name.substr(dot) + " gives one per replica)";
    return "";
}

std::string shellProgram(const std::string& command) {
    // What dash/bash would execute first, read the way the shell reads a simple command:
    // assignments (NAME=value) are skipped, exec and command look through to their argument,
    // a fully quoted word is unquoted. Anything that needs the shell to run first (expansions,
    // globs, subshells, redirections, escapes) makes the word unknowable: "" = not checked.
    static const std::set<std::string> notPrograms = {
        // keywords
        "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then", "until", "while",
        "[[", "function", "select", "time",
        // dash's builtins (and bash's common ones): no program to look up
        ".", ":", "[", "alias", "bg", "break", "cd", "chdir", "continue", "echo", "eval", "exit", "export", "false",
        "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf", "pwd", "read", "readonly", "return", "set",
        "shift", "test", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset", "wait", "source",
        "declare", "typeset", "let"};
    std::size_t i = 0;
    const std::size_t n = command.size();
    bool lookThrough = false;  // after exec/command
    for (;;) {
        while (i < n && (command[i] == ' ' || command[i] == '\t')) ++i;
        std::string word;
        bool quoted = false;
        while (i < n && command[i] != ' ' && command[i] != '\t' && command[i] != '\n') {
            char ch = command[i];
            if (ch == '\'' || ch == '"') {
                auto close = command.find(ch, i + 1);
                if (close == std::string::npos) return "";
                std::string inside = command.substr(i + 1, close - i - 1);
                if (ch == '"' && inside.find_first_of("$`\\") != std::string::npos) return "";
                word += inside;
                quoted = true;
                i = close + 1;
                continue;
            }
            if (std::string(";&|<>()$`\\*?[]{}~#").find(ch) != std::string::npos) return "";
            word += ch;
            ++i;
        }
        if (word.empty()) return "";
        if (!quoted && isAssignment(word)) continue;
        if (!quoted && (word == "exec" || word == "command") && !lookThrough) {
            lookThrough = true;
            continue;
        }
        if (lookThrough && word.starts_with("-")) return "";
        if (!quoted && notPrograms.count(word)) return "";
        return word;
    }
}

std::optional<ListenAddress> parseListenAddress(const std::string& text, std::string* why) {
    auto fail = [&](const std::string& w) -> std::optional<ListenAddress> {
        if (why) *why = w;
        return std::nullopt;
    };
    ListenAddress a;
    std::string port;
    if (text.starts_with("[")) {
        auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fail("expected [IPV6]:PORT (e.g. [::1]:9479)");
        a.host = text.substr(1, close - 1);
        a.ipv6 = true;
        port = text.substr(close + 2);
        in6_addr addr{};
        if (inet_pton(AF_INET6, a.host.c_str(), &addr) != 1)
            return fail("\"" + printable(a.host) + "\" is not an IPv6 address");
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string::npos) return fail("expected HOST:PORT (e.g. 127.0.0.1:9479)");
        a.host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (a.host.find(':') != std::string::npos) return fail("write an IPv6 address in brackets: [ADDRESS]:PORT");
        in_addr addr{};
        if (inet_pton(AF_INET, a.host.c_str(), &addr) != 1)
            return fail(
                "the host must be an IPv4 address or [IPv6] literal (prom does not resolve names), e.g. "
                "127.0.0.1:9479");
    }
    if (port.empty() || port.size() > 5 || !allIn(port, "") ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 || std::stoi(port) > 65535)
        return fail("the port must be 1-65535");
    a.port = static_cast<std::uint16_t>(std::stoi(port));
    return a;
}

void checkHost(const Raw& raw, const std::string& selfId, Sink& sink) {
    const Config& c = raw.config;
    // Files prom itself reads: a missing one fails only once prom talks to the store.
    for (const char* key : {"store.ca-file", "store.cert-file", "store.key-file", "store.password-file"}) {
        std::string k = key;
        const std::string& path = k == "store.ca-file"     ? c.store.caFile
                                  : k == "store.cert-file" ? c.store.certFile
                                  : k == "store.key-file"  ? c.store.keyFile
                                                           : c.store.passwordFile;
        if (path.empty()) continue;
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
            sink.error(c.locate(key),
                       raw.name(key) + ": cannot read " + printable(path) + ": " + std::strerror(errno) +
                           (errno == EACCES ? " (checked as uid " + std::to_string(geteuid()) + ")" : ""));
            continue;
        }
        struct stat st {};
        fstat(fd, &st);
        close(fd);
        if (!S_ISREG(st.st_mode)) {
            sink.error(c.locate(key), raw.name(key) + ": " + printable(path) + " is not a regular file");
            continue;
        }
        if ((k == "store.password-file" || k == "store.key-file") && (st.st_mode & S_IROTH))
            sink.warning(c.locate(key), raw.name(key) + ": " + printable(path) + " is readable by every user (mode " +
                                            modeOf(st) +
                                            "): chmod o-r it, or use the systemd credential store-password");
    }

    // Actions run on this node: this replica's own, and the restart-prom of its peers (run by
    // whichever replica is active). Without --id every replica's actions are checked.
    std::set<std::pair<std::string, std::string>> said;
    for (const auto& [id, s] : c.replica) {
        for (const char* kind : kActionKinds) {
            bool mine = selfId.empty() || (std::string(kind) == "restart-prom" ? id != selfId : id == selfId);
            if (!mine) continue;
            const Action& a = actionOf(s, kind);
            std::string program;
            Search search = Search::Path;
            if (a.kind == Action::Kind::Exec && !a.argv.empty()) {
                program = a.argv.front();
                search = Search::None;
            } else if (a.kind == Action::Kind::Shell) {
                program = shellProgram(a.command);
            }
            if (program.empty()) continue;
            Finding f = checkProgram(program, search);
            std::string key = actionKey(raw, id, kind);
            if (f.text.empty() || !said.emplace(key, program).second) continue;
            sink.diagnostics.push_back({f.severity, sink.path, c.locate(key), raw.name(key) + ": " + f.text});
        }
    }
}

void validate(Raw& raw, const std::string& selfId, Sink& sink) {
    Config& c = raw.config;
    const bool music = c.store.backend == Backend::Music;

    if (c.appName.empty())
        sink.error(c.locate("app-name"), raw.name("app-name") + " must be set: it names the election");
    else if (!allIn(c.appName, music ? "_" : "_.-"))
        sink.error(c.locate("app-name"), raw.name("app-name") + " = \"" + c.appName +
                                             "\" may contain only letters, digits" +
                                             (music ? " and _ (it names the MUSIC keyspace prom_APP)" : ", _ . and -"));

    if (c.replicas.empty())
        sink.error(c.locate("replicas"), raw.name("replicas") + " must list at least one replica id");
    std::set<std::string> ids;
    validateReplicaIds(raw, sink, ids);
    if (!selfId.empty() && !c.replicas.empty() && !ids.count(selfId))
        sink.error(c.locate("replicas"),
                   "this replica's id \"" + selfId + "\" (--id) is not in " + raw.name("replicas"));
    for (const auto& [id, o] : raw.overrides)
        if (!ids.count(id))
            sink.error(c.locate("replica." + id),
                       "settings for replica \"" + id + "\", which is not in " + raw.name("replicas"));

    for (const auto& id : c.replicas) {
        ReplicaSettings s = c.defaults;
        if (auto it = raw.overrides.find(id); it != raw.overrides.end()) {
            auto& set = raw.overridden[id];
            if (set["ensure-active"]) s.ensureActive = it->second.ensureActive;
            if (set["ensure-passive"]) s.ensurePassive = it->second.ensurePassive;
            if (set["restart-prom"]) s.restartProm = it->second.restartProm;
            s.priority = it->second.priority;
        }
        s.httpListen = httpListenOf(raw, id);
        s.ensureActive = s.ensureActive.expanded(id);
        s.ensurePassive = s.ensurePassive.expanded(id);
        s.restartProm = s.restartProm.expanded(id);
        Location where = c.where.count("replica." + id) ? c.locate("replica." + id) : c.locate("actions");
        const bool json = raw.spelled.count("replicas") > 0;
        if (s.ensureActive.kind == Action::Kind::None)
            sink.error(where,
                       "replica \"" + id + "\" has no ensure-active action (" +
                           (json ? "\"ensure-active-" + id + "\"" : "[actions] or [replica." + id + "] ensure-active") +
                           ")");
        if (s.ensurePassive.kind == Action::Kind::None)
            sink.error(where, "replica \"" + id + "\" has no ensure-passive action (" +
                                  (json ? "\"ensure-passive-" + id + "\""
                                        : "[actions] or [replica." + id + "] ensure-passive") +
                                  ")");
        c.replica[id] = s;
    }

    validateTiming(raw, sink);

    if (c.store.endpoints.empty())
        sink.error(c.locate("store.endpoints"), raw.name("store.endpoints") + " must list at least one " +
                                                    (music ? "MUSIC location" : "etcd endpoint"));
    std::set<std::string> eps;
    for (const auto& ep : c.store.endpoints) {
        if (ep.empty()) {
            sink.error(c.locate("store.endpoints"), raw.name("store.endpoints") + " contains an empty entry");
            continue;
        }
        if (!eps.insert(ep).second)
            sink.error(c.locate("store.endpoints"), "endpoint " + text::redactUrl(ep, "***") + " is listed twice");
        bool url = ep.starts_with("http://") || ep.starts_with("https://");
        if (!music && !url)
            sink.error(c.locate("store.endpoints"),
                       "etcd endpoint \"" + text::redactUrl(ep, "***") + "\" must be a URL like http://127.0.0.1:2379");
        if (url && ep.find("://") + 3 >= ep.size())
            sink.error(c.locate("store.endpoints"), "endpoint \"" + text::redactUrl(ep, "***") + "\" has no host");
        if (url && hasUserinfo(ep))
            // The URL would end up in logs and in LastError; the error must not repeat the password.
            sink.error(c.locate("store.endpoints"), "endpoint " + text::redactUrl(ep, "***") +
                                                        " carries credentials in the URL: put the user in " +
                                                        raw.name("store.userid") +
                                                        " and the password in store.password-file (or the "
                                                        "systemd credential store-password)");
    }
    if (!c.store.passwordFile.empty() && !c.store.password.empty())
        sink.error(c.locate("store.password-file"),
                   "give the store password either inline or in password-file, not both");
    if (!music && c.store.prefix.empty())
        sink.error(c.locate("store.prefix"), "store.prefix must not be empty (try \"/prom\")");
    if ((c.store.certFile.empty()) != (c.store.keyFile.empty()))
        sink.error(c.locate(c.store.certFile.empty() ? "store.key-file" : "store.cert-file"),
                   "store.cert-file and store.key-file must be given together");
    if (!music && (!c.store.aid.empty() || !c.store.ns.empty()))
        sink.warning(c.locate(c.store.aid.empty() ? "store.namespace" : "store.aid"),
                     "store.aid and store.namespace are used by the music backend only");

    validateStoreTransport(raw, sink);
    validateUnits(raw, sink);
    validateHttp(raw, sink);
    if (raw.hostChecks == HostChecks::Run) checkHost(raw, selfId, sink);
    validateFastMode(raw, sink);
}

// ---- fast mode (prom(8) FAST MODE: the timing rules the peer-support argument needs) ----

void validateFastMode(Raw& raw, Sink& sink) {
    Config& c = raw.config;
    for (auto& [id, s] : c.replica) {
        if (auto it = raw.overrides.find(id); it != raw.overrides.end()) {
            s.address = it->second.address;
            s.witness = it->second.witness;
        }
    }
    const auto& e = c.election;
    const bool fast = e.mode == ElectionSettings::Mode::Fast;
    if (!fast) {
        for (const auto& [id, s] : c.replica)
            if (s.witness)
                sink.error(c.locate("replica." + id),
                           "[replica." + id + "] witness = true needs election.mode = \"fast\"");
        return;
    }
    if (c.store.backend != Backend::Etcd)
        sink.error(c.locate("election.mode"), "election.mode = \"fast\" needs store.backend = \"etcd\"");
    if (e.heartbeat < Millis(5))
        sink.error(c.locate("election.heartbeat-ms"),
                   "election.heartbeat-ms (" + ms(e.heartbeat) + ") must be at least 5 ms");
    // Eight heartbeats per support period: a few lost datagrams must not cost the active its role.
    if (e.support < 8 * e.heartbeat)
        sink.error(c.locate("election.support-ms"),
                   "election.support-ms (" + ms(e.support) + ") must be at least 8 x election.heartbeat-ms (" +
                       ms(8 * e.heartbeat) + "): raise support-ms or lower heartbeat-ms");
    const Millis ttl(leaseTtlSeconds(e) * 1000);
    if (e.support >= ttl - e.demoteMargin)
        sink.error(c.locate("election.support-ms"),
                   "election.support-ms (" + ms(e.support) +
                       ") must be shorter than the lease deadline (TTL - demote-margin = " + ms(ttl - e.demoteMargin) +
                       "): lower support-ms or raise election.timeout-ms");
    std::set<std::string> addresses;
    int voters = 0, candidates = 0;
    for (const auto& id : c.replicas) {
        const auto& s = c.replica[id];
        ++voters;
        if (!s.witness) ++candidates;
        Location where = c.where.count("replica." + id) ? c.locate("replica." + id) : c.locate("election.mode");
        if (s.address.empty())
            sink.error(where, "[replica." + id + "] address (UDP host:port) is required with election.mode = \"fast\"");
        else if (s.address.rfind(':') == std::string::npos)
            sink.error(where, "[replica." + id + "] address = \"" + s.address + "\" must be host:port");
        else if (!addresses.insert(s.address).second)
            sink.error(where, "[replica." + id + "] address = \"" + s.address + "\" is used by another replica");
        if (id.size() > 32)
            sink.error(where,
                       "replica id \"" + id + "\" is longer than 32 bytes, the limit of fast mode's peer datagrams");
    }
    if (candidates == 0)
        sink.error(c.locate("replicas"), "every replica is a witness: at least one must be able to become active");
    if (voters == 2)
        sink.warning(
            c.locate("replicas"),
            "fast mode with two replicas needs a third vote: add a witness replica ([replica.ID] witness = true), "
            "or a majority is lost with either replica");
}

}  // namespace prom::config

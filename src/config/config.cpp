#include "config/config.hpp"

#include <cstdlib>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace prom::config {

namespace {
// A prom configuration is a few KB; refusing huge files keeps a mistaken path
// (a log, a disk image) from being slurped into memory.
constexpr std::size_t kMaxFileSize = 1 << 20;

// Built into a new string: replacing in place moves the tail at every match, which is
// quadratic in the number of matches.
std::string replaceAll(const std::string& s, const std::string& from, const std::string& to) {
    std::string out;
    std::size_t last = 0;
    for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += from.size()) {
        out.append(s, last, pos - last);
        out += to;
        last = pos + from.size();
    }
    out.append(s, last, std::string::npos);
    return out;
}

// Every replica gets its own copy of the actions with %i expanded: a 680 KB file with %i in
// many actions for many replicas grew to 1.5 GB and took over a minute (issue 9 item 8).
constexpr std::size_t kMaxExpandedActionBytes = 8u << 20;

std::size_t countOf(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (std::size_t pos = 0; (pos = s.find(what, pos)) != std::string::npos; pos += what.size()) ++n;
    return n;
}

std::size_t expandedSize(const Action& a, const std::string& id) {
    auto one = [&](const std::string& s) { return s.size() + countOf(s, "%i") * id.size(); };
    std::size_t n = one(a.command) + one(a.unit);
    for (const auto& arg : a.argv) n += one(arg) + 1;
    return n;
}

/** What the per-replica settings will weigh once %i is expanded, stopping at the bound. */
std::size_t expansionCost(const Raw& raw) {
    std::size_t total = 0;
    for (const auto& id : raw.config.replicas) {
        const ReplicaSettings* o = nullptr;
        if (auto it = raw.overrides.find(id); it != raw.overrides.end()) o = &it->second;
        auto set = [&](const char* key) {
            auto it = raw.overridden.find(id);
            return o && it != raw.overridden.end() && it->second.count(key) && it->second.at(key);
        };
        const auto& d = raw.config.defaults;
        total += expandedSize(set("ensure-active") ? o->ensureActive : d.ensureActive, id);
        total += expandedSize(set("ensure-passive") ? o->ensurePassive : d.ensurePassive, id);
        total += expandedSize(set("restart-prom") ? o->restartProm : d.restartProm, id);
        if (total > kMaxExpandedActionBytes) break;
    }
    return total;
}

bool looksLikeJson(const std::string& path, const std::string& text) {
    if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) return true;
    auto first = text.find_first_not_of(" \t\r\n");
    return first != std::string::npos && text[first] == '{';
}
}  // namespace

std::string Action::describe() const {
    switch (kind) {
        case Kind::None: return "(none)";
        case Kind::Shell: return command;
        case Kind::Exec: {
            std::string s;
            for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
            return s;
        }
        case Kind::StartUnit: return "start-unit " + unit;
        case Kind::StopUnit: return "stop-unit " + unit;
    }
    return "?";
}

Action Action::expanded(const std::string& id) const {
    Action a = *this;
    a.command = replaceAll(a.command, "%i", id);
    for (auto& arg : a.argv) arg = replaceAll(arg, "%i", id);
    a.unit = replaceAll(a.unit, "%i", id);
    return a;
}

Location Config::locate(const std::string& key) const {
    auto it = where.find(key);
    return it == where.end() ? Location{} : it->second;
}

std::string Diagnostic::format() const {
    return path + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
           (severity == Severity::Warning ? "warning: " : "") + message;
}

bool LoadResult::hasErrors() const {
    for (const auto& d : diagnostics)
        if (d.severity == Diagnostic::Severity::Error) return true;
    return false;
}

std::int64_t leaseTtlSeconds(const ElectionSettings& e) { return (e.timeout.count() + 999) / 1000; }

LoadResult loadText(const std::string& path, const std::string& text, const std::string& selfId, HostChecks checks) {
    Sink sink{path, {}};
    LoadResult result;
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
        sink.error({}, "the file is empty; expected a TOML configuration (prom.conf(5)) or a PROM config.json");
        result.diagnostics = std::move(sink.diagnostics);
        return result;
    }
    if (auto nul = text.find('\0'); nul != std::string::npos) {
        int line = 1, col = 1;
        for (std::size_t i = 0; i < nul; ++i) {
            if (text[i] == '\n') ++line, col = 1;
            else ++col;
        }
        sink.error({line, col}, "NUL byte: this is not a text file");
        result.diagnostics = std::move(sink.diagnostics);
        return result;
    }
    Raw raw;
    raw.config.path = path;
    raw.hostChecks = checks;
    if (looksLikeJson(path, text))
        parsePromJson(text, raw, sink);
    else
        parseToml(text, raw, sink);
    bool parsed = true;
    for (const auto& d : sink.diagnostics)
        if (d.severity == Diagnostic::Severity::Error) parsed = false;
    if (parsed && expansionCost(raw) > kMaxExpandedActionBytes) {
        sink.error(raw.config.locate("actions"), "the actions of " + std::to_string(raw.config.replicas.size()) +
                                                     " replicas, with %i expanded for each, would take more than " +
                                                     std::to_string(kMaxExpandedActionBytes >> 20) + " MiB");
        parsed = false;
    }
    if (parsed) validate(raw, selfId, sink);
    result.diagnostics = std::move(sink.diagnostics);
    if (!result.hasErrors()) result.config = std::move(raw.config);
    return result;
}

LoadResult load(const std::string& given, const std::string& selfId, HostChecks checks) {
    std::string path = given;
    LoadResult result;
    auto fail = [&](const std::string& p, const std::string& message) {
        result.diagnostics.push_back({Diagnostic::Severity::Error, p, {}, message});
        return result;
    };
    struct stat st {};
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        // PROM's -c takes a directory and reads DIR/config.json.
        path = given + (given.ends_with("/") ? "" : "/") + "config.json";
        if (stat(path.c_str(), &st) != 0)
            return fail(given, "is a directory without config.json (PROM's -c DIR reads DIR/config.json)");
    }
    if (stat(path.c_str(), &st) != 0) return fail(path, std::string("cannot read: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(path, "not a regular file");
    if (static_cast<std::size_t>(st.st_size) > kMaxFileSize)
        return fail(path, "file is " + std::to_string(st.st_size) + " bytes; a configuration may be at most " +
                              std::to_string(kMaxFileSize) + " bytes");
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(path, std::string("cannot open: ") + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    return loadText(path, ss.str(), selfId, checks);
}

std::string readTrimmedFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

std::string storePassword(const StoreSettings& s) {
    if (!s.passwordFile.empty()) return readTrimmedFile(s.passwordFile);
    if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY")) {
        std::string p = std::string(creds) + "/store-password";
        struct stat st {};
        if (stat(p.c_str(), &st) == 0) return readTrimmedFile(p);
    }
    return s.password;
}

}  // namespace prom::config

#include "config/config.hpp"

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

std::string replaceAll(std::string s, const std::string& from, const std::string& to) {
    for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
        s.replace(pos, from.size(), to);
    return s;
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

}  // namespace prom::config

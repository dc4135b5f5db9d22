#include "sd/fence_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace prom::sd {
namespace {

// Bounded: the file is small by construction; anything bigger is not ours.
constexpr std::size_t kMaxSize = 256 * 1024;
constexpr int kVersion = 1;

std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default: out += c;
        }
    }
    return out;
}

std::optional<std::string> unescape(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\') {
            out += s[i];
            continue;
        }
        if (++i == s.size()) return std::nullopt;
        switch (s[i]) {
            case '\\': out += '\\'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            default: return std::nullopt;
        }
    }
    return out;
}

const char* kindName(FenceAction::Kind k) {
    switch (k) {
        case FenceAction::Kind::Shell: return "shell";
        case FenceAction::Kind::Exec: return "exec";
        case FenceAction::Kind::StartUnit: return "start-unit";
        case FenceAction::Kind::StopUnit: return "stop-unit";
    }
    return "?";
}

std::optional<std::uint64_t> parseUnsigned(const std::string& s) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        std::uint64_t next = v * 10 + static_cast<std::uint64_t>(c - '0');
        if (next / 10 != v) return std::nullopt;
        v = next;
    }
    return v;
}

std::uint64_t clockUsec(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

bool fail(std::string* error, const std::string& why) {
    if (error) *error = why;
    return false;
}

}  // namespace

std::uint64_t boottimeUsec() { return clockUsec(CLOCK_BOOTTIME); }
std::uint64_t monotonicUsec() { return clockUsec(CLOCK_MONOTONIC); }

std::string formatFence(const FenceRecord& r) {
    std::ostringstream out;
    out << "prom-fence " << kVersion << "\n";
    out << "replica " << escape(r.replica) << "\n";
    out << "app " << escape(r.app) << "\n";
    out << "deadline-boottime-usec " << r.deadlineBoottimeUsec << "\n";
    out << "token " << r.token << "\n";
    out << "timeout-ms " << r.timeoutMs << "\n";
    if (!r.invocation.empty()) out << "invocation " << escape(r.invocation) << "\n";
    out << "action " << kindName(r.action.kind) << "\n";
    for (const auto& a : r.action.args) out << "arg " << escape(a) << "\n";
    for (const auto& [k, v] : r.env) out << "env " << escape(k + "=" + v) << "\n";
    out << "end\n";
    return out.str();
}

std::optional<FenceRecord> parseFence(const std::string& text, std::string* error) {
    auto bad = [&](const std::string& why) -> std::optional<FenceRecord> {
        if (error) *error = why;
        return std::nullopt;
    };
    if (text.size() > kMaxSize) return bad("larger than " + std::to_string(kMaxSize) + " bytes");
    FenceRecord r;
    bool sawVersion = false, sawDeadline = false, sawAction = false, sawEnd = false, sawToken = false;
    std::istringstream in(text);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (sawEnd) return bad("line " + std::to_string(n) + ": text after 'end'");
        auto sp = line.find(' ');
        std::string key = line.substr(0, sp);
        std::string raw = sp == std::string::npos ? "" : line.substr(sp + 1);
        auto value = unescape(raw);
        if (!value) return bad("line " + std::to_string(n) + ": bad escape");
        auto where = "line " + std::to_string(n) + " (" + key + "): ";
        if (n == 1) {
            if (key != "prom-fence" || *value != std::to_string(kVersion)) return bad("not a prom-fence version 1 file");
            sawVersion = true;
        } else if (key == "replica") {
            r.replica = *value;
        } else if (key == "app") {
            r.app = *value;
        } else if (key == "deadline-boottime-usec") {
            auto v = parseUnsigned(*value);
            if (!v) return bad(where + "not a number");
            r.deadlineBoottimeUsec = *v;
            sawDeadline = true;
        } else if (key == "token") {
            auto v = parseUnsigned(*value);
            if (!v || *v > static_cast<std::uint64_t>(INT64_MAX)) return bad(where + "not a token");
            r.token = static_cast<std::int64_t>(*v);
            sawToken = true;
        } else if (key == "timeout-ms") {
            auto v = parseUnsigned(*value);
            if (!v || *v == 0 || *v > 24ull * 3600 * 1000) return bad(where + "not a timeout");
            r.timeoutMs = *v;
        } else if (key == "invocation") {
            r.invocation = *value;
        } else if (key == "action") {
            if (*value == "shell") r.action.kind = FenceAction::Kind::Shell;
            else if (*value == "exec") r.action.kind = FenceAction::Kind::Exec;
            else if (*value == "start-unit") r.action.kind = FenceAction::Kind::StartUnit;
            else if (*value == "stop-unit") r.action.kind = FenceAction::Kind::StopUnit;
            else return bad(where + "unknown action kind");
            sawAction = true;
        } else if (key == "arg") {
            r.action.args.push_back(*value);
        } else if (key == "env") {
            auto eq = value->find('=');
            if (eq == std::string::npos || eq == 0) return bad(where + "not KEY=VALUE");
            r.env[value->substr(0, eq)] = value->substr(eq + 1);
        } else if (key == "end") {
            sawEnd = true;
        } else {
            return bad(where + "unknown key");
        }
    }
    if (!sawVersion) return bad("empty");
    if (!sawEnd) return bad("truncated (no 'end' line)");
    if (!sawDeadline || !sawToken || !sawAction) return bad("deadline, token or action missing");
    const auto& a = r.action;
    bool shapeOk = a.kind == FenceAction::Kind::Exec ? !a.args.empty() && !a.args[0].empty() : a.args.size() == 1 && !a.args[0].empty();
    if (!shapeOk) return bad("the " + std::string(kindName(a.kind)) + " action has the wrong number of arguments");
    return r;
}

bool writeFenceFile(const std::string& path, const FenceRecord& r, std::string* error) {
    std::string tmp = path + ".tmp";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return fail(error, tmp + ": " + std::strerror(errno));
    std::string text = formatFence(r);
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t w = write(fd, text.data() + done, text.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp.c_str());
            return fail(error, tmp + ": " + std::strerror(e));
        }
        done += static_cast<std::size_t>(w);
    }
    // /run is tmpfs: fdatasync costs nothing there and keeps the rename honest elsewhere.
    fdatasync(fd);
    close(fd);
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        unlink(tmp.c_str());
        return fail(error, path + ": " + std::strerror(e));
    }
    return true;
}

std::optional<FenceRecord> readFenceFile(const std::string& path, std::string* error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (error) *error = errno == ENOENT ? "" : path + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::string text;
    char buf[4096];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<std::size_t>(in.gcount()));
        if (text.size() > kMaxSize) break;
    }
    std::string why;
    auto r = parseFence(text, &why);
    if (!r && error) *error = path + ": " + why;
    return r;
}

}  // namespace prom::sd

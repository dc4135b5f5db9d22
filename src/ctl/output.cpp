#include "ctl/output.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <iterator>

namespace prom::ctl {

// Everything printed that came from a daemon (and through it from the store) goes through
// here: control characters, C1 controls and invalid UTF-8 become \xNN, so a crafted leader key
// or error message cannot drive the terminal (escape sequences) or fake table rows.
std::string clean(const std::string& s) {
    std::string out;
    auto hex = [&](unsigned char ch) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", ch);
        out += buf;
    };
    for (std::size_t i = 0; i < s.size();) {
        auto ch = static_cast<unsigned char>(s[i]);
        if (ch < 0x80) {
            if (ch < 0x20 || ch == 0x7f)
                hex(ch);
            else if (ch == '\\')
                out += "\\\\";
            else
                out += static_cast<char>(ch);
            ++i;
            continue;
        }
        std::size_t len = ch >= 0xf0 && ch <= 0xf4 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc2 && ch < 0xe0 ? 2 : 0;
        bool valid = len && i + len <= s.size();
        std::uint32_t cp = valid ? (len == 2 ? ch & 0x1f : len == 3 ? ch & 0x0f : ch & 0x07) : 0;
        for (std::size_t k = 1; valid && k < len; ++k) {
            auto c = static_cast<unsigned char>(s[i + k]);
            valid = (c & 0xc0) == 0x80;
            cp = (cp << 6) | (c & 0x3f);
        }
        // Overlong forms, surrogates, beyond U+10FFFF, and C1 controls (U+0080-U+009F, which
        // some terminals obey like ESC sequences).
        valid = valid && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10ffff)) &&
                !(cp >= 0xd800 && cp <= 0xdfff) && !(cp >= 0x80 && cp <= 0x9f);
        if (!valid) {
            hex(ch);
            ++i;
            continue;
        }
        out.append(s, i, len);
        i += len;
    }
    return out;
}

// On a terminal the last column is cut to the window width, so that a long store error
// (curl's messages run to 150 characters) does not wrap into the next rows; piped output
// keeps the whole text for scripts and bug reports.
std::string fitLastColumn(const std::string& text, std::size_t used) {
    winsize ws{};
    if (!isatty(STDOUT_FILENO) || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return text;
    const std::size_t room = ws.ws_col > used + 8 ? ws.ws_col - used : 8;
    auto isLead = [](char ch) { return (static_cast<unsigned char>(ch) & 0xc0) != 0x80; };  // not a UTF-8 continuation
    std::size_t chars = 0;
    for (char ch : text) chars += isLead(ch);
    if (chars <= room) return text;
    std::size_t keep = room - 3, seen = 0, i = 0;
    for (; i < text.size(); ++i)
        if (isLead(text[i]) && seen++ == keep) break;
    return text.substr(0, i) + "...";
}

std::string since(std::uint64_t usec) {
    if (!usec) return "-";
    std::time_t t = static_cast<std::time_t>(usec / 1000000);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

std::string compactAge(std::uint64_t seconds) {
    struct Unit {
        std::uint64_t seconds;
        const char* name;
    };
    static constexpr Unit kUnits[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
    for (std::size_t k = 0; k + 1 < std::size(kUnits); ++k) {
        if (seconds < kUnits[k].seconds) continue;
        std::string out = std::to_string(seconds / kUnits[k].seconds) + kUnits[k].name;
        if (std::uint64_t rest = seconds % kUnits[k].seconds / kUnits[k + 1].seconds)
            out += std::to_string(rest) + kUnits[k + 1].name;
        return out;
    }
    return std::to_string(seconds) + "s";
}

std::string withAge(const std::string& text, std::uint64_t usec) {
    if (text.empty() || usec == 0) return text;
    const std::uint64_t now = realtimeUsec();
    return "[" + compactAge(now > usec ? (now - usec) / 1000000 : 0) + " ago] " + text;
}

std::uint64_t realtimeUsec() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

}  // namespace prom::ctl

#include "common/text.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace prom::text {
namespace {

// Length of the well-formed UTF-8 sequence at s[i], or 0 (RFC 3629 table 3-7).
std::size_t sequenceLength(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const std::size_t left = s.size() - i;
    unsigned char c = b(0);
    if (c < 0x80) return 1;
    auto cont = [&](std::size_t k) { return (b(k) & 0xC0) == 0x80; };
    if (c >= 0xC2 && c <= 0xDF) return left >= 2 && cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || !cont(1) || !cont(2)) return 0;
        if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
        if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogates
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
        if (c == 0xF4 && b(1) > 0x8F) return 0;  // past U+10FFFF
        return 4;
    }
    return 0;
}

}  // namespace

bool isValidUtf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        std::size_t n = sequenceLength(s, i);
        if (!n) return false;
        i += n;
    }
    return true;
}

std::string sanitize(std::string_view s, std::size_t maxBytes) {
    std::string out;
    out.reserve(std::min(s.size(), maxBytes) + 4);
    for (std::size_t i = 0; i < s.size();) {
        std::size_t n = sequenceLength(s, i);
        std::string piece;
        if (n == 0) {
            piece = "\xEF\xBF\xBD";  // U+FFFD for one stray byte
            n = 1;
        } else if (n == 1) {
            unsigned char c = static_cast<unsigned char>(s[i]);
            if (c == '\n') {
                piece = "\\n";
            } else if (c == '\t') {
                piece = "\\t";
            } else if (c < 0x20 || c == 0x7F) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\x%02x", c);
                piece = buf;
            } else {
                piece.assign(1, static_cast<char>(c));
            }
        } else if (n == 2 && static_cast<unsigned char>(s[i]) == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) {
            char buf[8];  // C1 controls U+0080..U+009F (a terminal acts on CSI U+009B)
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(s[i + 1]));
            piece = buf;
        } else {
            piece.assign(s.substr(i, n));
        }
        if (out.size() + piece.size() > maxBytes) {
            out += "...";
            return out;
        }
        out += piece;
        i += n;
    }
    return out;
}

std::string excerpt(std::string_view body, std::size_t maxBytes) {
    const char* space = " \t\r\n";
    std::size_t b = body.find_first_not_of(space);
    if (b == std::string_view::npos) return "";
    std::size_t e = body.find_last_not_of(space);
    // Sanitizing never shrinks text, so a prefix a little longer than maxBytes is enough.
    std::string_view core = body.substr(b, std::min(e - b + 1, maxBytes + 4));
    return sanitize(core, maxBytes);
}

std::string redactUrl(std::string_view url, std::string_view marker) {
    std::size_t scheme = url.find("://");
    std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
    std::size_t end = url.find_first_of("/?#", start);
    std::size_t at = url.rfind('@', end == std::string_view::npos ? url.size() : end);
    if (at == std::string_view::npos || at < start) return sanitize(url, 512);
    std::string shown(url.substr(0, start));
    if (!marker.empty()) shown += std::string(marker) + "@";
    return sanitize(shown + std::string(url.substr(at + 1)), 512);
}

}  // namespace prom::text

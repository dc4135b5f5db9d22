#pragma once
// Text from outside (store replies, watch lines, HTTP bodies, config values) made safe for
// D-Bus (which rejects invalid UTF-8), the journal and a terminal: valid UTF-8, no control
// characters, bounded length. (systemd's utf8_is_valid()/cescape() before logging.)
#include <cstddef>
#include <string>
#include <string_view>

namespace prom::text {

/** Whether s is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
bool isValidUtf8(std::string_view s);

/** Valid UTF-8 without control characters, at most maxBytes long (plus "..." when cut): each
 *  byte that is not part of a well-formed character becomes U+FFFD, control characters
 *  (C0, DEL, C1) become \n, \t, \xHH or \u00HH escapes. Never cuts inside a character. */
std::string sanitize(std::string_view s, std::size_t maxBytes = 256);

/** A short, sanitized excerpt of a reply body for an error message (whitespace at the ends
 *  trimmed). */
std::string excerpt(std::string_view body, std::size_t maxBytes = 120);

/** url without its user:password (so that a message never carries credentials): the userinfo
 *  and its "@" dropped, or with a marker ("***") the userinfo replaced by it. */
std::string redactUrl(std::string_view url, std::string_view marker = "");

}  // namespace prom::text

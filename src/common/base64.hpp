#pragma once
// etcd's JSON gateway carries keys and values as standard padded base64 (RFC 4648).
#include <optional>
#include <string>
#include <string_view>

namespace prom::base64 {
std::string encode(std::string_view data);
/** nullopt on any character outside the standard alphabet or bad padding. */
std::optional<std::string> decode(std::string_view text);
}  // namespace prom::base64

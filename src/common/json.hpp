#pragma once
// A small owned JSON tree built with simdjson: the config loader needs byte offsets of every
// key (for PATH:LINE:COLUMN messages) and duplicate keys, which a plain DOM does not keep.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace prom::json {

enum class Type { Null, Bool, Number, String, Array, Object };

struct Member;

/** One JSON value with the byte offset where it starts in the source text. */
struct Value {
    Type type = Type::Null;
    std::size_t offset = 0;
    bool boolean = false;
    std::string text;  ///< unescaped string, or the raw token of a number
    std::vector<Value> items;
    std::vector<Member> members;

    /** First member named key, or nullptr (also when this is not an object). */
    const Value* find(std::string_view key) const;
    /** A string. */
    std::optional<std::string> asString() const;
    /** An integer given as a JSON number or as a decimal string (etcd sends int64 as strings). */
    std::optional<std::int64_t> asInt() const;
    std::optional<std::uint64_t> asUint() const;
};

struct Member {
    std::string key;
    std::size_t keyOffset = 0;
    Value value;
};

/** Where and why a text is not JSON. */
struct SyntaxError {
    std::size_t offset = 0;
    std::string message;
};

/** Bounds on a document, checked by a linear scan before anything is built: nesting deeper
 *  than maxDepth would recurse without bound, and every value costs ~150 bytes in the tree
 *  (a 4 MiB array of 0s would cost ~300 MB). */
struct Limits {
    std::size_t maxBytes = 16u << 20;
    std::size_t maxDepth = 64;
    std::size_t maxValues = 200000;
};

/** Limits for replies of a coordination store: small objects, shallow. */
inline constexpr Limits kStoreLimits{1u << 20, 32, 20000};

/** Parses a whole document within limits; rejects trailing content. */
std::variant<Value, SyntaxError> parse(std::string_view text, const Limits& limits = Limits{});

/** 1-based line and column of a byte offset. */
std::pair<int, int> lineColumn(std::string_view text, std::size_t offset);

/** Text as a quoted JSON string literal. */
std::string quote(std::string_view text);

/** Parses a decimal integer, accepting nothing else. */
std::optional<std::int64_t> parseInt(std::string_view text);

}  // namespace prom::json

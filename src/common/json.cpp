#include "common/json.hpp"

#include <simdjson.h>

#include <charconv>
#include <cstdio>

namespace prom::json {
namespace od = simdjson::ondemand;

namespace {

struct Builder {
    const char* base;
    od::document* doc;
    SyntaxError error;

    std::size_t here(od::value& v) {
        const char* loc = nullptr;
        std::string_view tok = v.raw_json_token();
        if (tok.data()) return static_cast<std::size_t>(tok.data() - base);
        if (!doc->current_location().get(loc)) return static_cast<std::size_t>(loc - base);
        return 0;
    }

    bool fail(simdjson::error_code code, std::size_t fallback) {
        const char* loc = nullptr;
        std::size_t at = fallback;
        if (!doc->current_location().get(loc) && loc) at = static_cast<std::size_t>(loc - base);
        error = SyntaxError{at, std::string("invalid JSON: ") + simdjson::error_message(code)};
        return false;
    }

    bool build(od::value v, Value& out, std::size_t start) {
        od::json_type t;
        if (auto e = v.type().get(t)) return fail(e, start);
        out.offset = here(v);
        switch (t) {
            case od::json_type::null: {
                bool isNull = false;
                if (auto e = v.is_null().get(isNull); e || !isNull) return fail(e ? e : simdjson::N_ATOM_ERROR, out.offset);
                out.type = Type::Null;
                return true;
            }
            case od::json_type::boolean:
                out.type = Type::Bool;
                if (auto e = v.get_bool().get(out.boolean)) return fail(e, out.offset);
                return true;
            case od::json_type::number: {
                out.type = Type::Number;
                std::string_view tok = v.raw_json_token();
                while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\n' || tok.back() == '\t' || tok.back() == '\r'))
                    tok.remove_suffix(1);
                double d;
                if (auto e = v.get_double().get(d)) return fail(e, out.offset);
                out.text = std::string(tok);
                return true;
            }
            case od::json_type::string: {
                out.type = Type::String;
                std::string_view s;
                if (auto e = v.get_string().get(s)) return fail(e, out.offset);
                out.text = std::string(s);
                return true;
            }
            case od::json_type::array: {
                out.type = Type::Array;
                od::array a;
                if (auto e = v.get_array().get(a)) return fail(e, out.offset);
                for (auto item : a) {
                    od::value iv;
                    if (auto e = item.get(iv)) return fail(e, out.offset);
                    Value child;
                    if (!build(iv, child, out.offset)) return false;
                    out.items.push_back(std::move(child));
                }
                return true;
            }
            case od::json_type::object: {
                out.type = Type::Object;
                od::object o;
                if (auto e = v.get_object().get(o)) return fail(e, out.offset);
                for (auto field : o) {
                    Member m;
                    if (auto e = field.error()) return fail(e, out.offset);
                    // raw() points just past the opening quote.
                    m.keyOffset = static_cast<std::size_t>(field.value_unsafe().key().raw() - base) - 1;
                    std::string_view key;
                    if (auto e = field.unescaped_key().get(key)) return fail(e, m.keyOffset);
                    m.key = std::string(key);
                    od::value fv;
                    if (auto e = field.value().get(fv)) return fail(e, m.keyOffset);
                    if (!build(fv, m.value, m.keyOffset)) return false;
                    out.members.push_back(std::move(m));
                }
                return true;
            }
        }
        return fail(simdjson::TAPE_ERROR, start);
    }
};

// Depth and number of values, outside strings, in one pass: a hostile document is refused
// before simdjson or the recursive Builder see it.
std::optional<SyntaxError> checkLimits(std::string_view text, const Limits& limits) {
    if (text.size() > limits.maxBytes)
        return SyntaxError{limits.maxBytes, "document larger than " + std::to_string(limits.maxBytes) + " bytes"};
    std::size_t depth = 0, values = 1;
    bool inString = false, escaped = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (inString) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                inString = false;
            continue;
        }
        switch (c) {
            case '"': inString = true; break;
            case '[':
            case '{':
                if (++depth > limits.maxDepth)
                    return SyntaxError{i, "JSON nested deeper than " + std::to_string(limits.maxDepth) + " levels"};
                [[fallthrough]];
            case ',':
                if (++values > limits.maxValues)
                    return SyntaxError{i, "JSON with more than " + std::to_string(limits.maxValues) + " values"};
                break;
            case ']':
            case '}':
                if (depth) --depth;
                break;
            default: break;
        }
    }
    return std::nullopt;
}

}  // namespace

std::variant<Value, SyntaxError> parse(std::string_view text, const Limits& limits) {
    std::size_t firstNonSpace = text.find_first_not_of(" \t\r\n");
    if (firstNonSpace == std::string_view::npos) return SyntaxError{text.size(), "empty document"};
    if (auto e = checkLimits(text, limits)) return *e;
    simdjson::padded_string padded(text);
    od::parser parser;
    od::document doc;
    if (auto e = parser.iterate(padded).get(doc))
        return SyntaxError{0, std::string("invalid JSON: ") + simdjson::error_message(e)};
    Builder b{padded.data(), &doc, {}};
    Value root;
    od::value top;
    // A scalar document cannot be read as an od::value; PROM configs and etcd replies are
    // objects, so a scalar top level is reported as such.
    od::json_type t;
    if (auto e = doc.type().get(t)) return SyntaxError{firstNonSpace, std::string("invalid JSON: ") + simdjson::error_message(e)};
    if (t != od::json_type::object && t != od::json_type::array)
        return SyntaxError{firstNonSpace, "expected a JSON object"};
    if (auto e = doc.get_value().get(top)) return SyntaxError{firstNonSpace, std::string("invalid JSON: ") + simdjson::error_message(e)};
    if (!b.build(top, root, firstNonSpace)) return b.error;
    // current_location() fails with OUT_OF_BOUNDS exactly when nothing follows the document.
    const char* loc = nullptr;
    if (!doc.current_location().get(loc) && loc)
        return SyntaxError{static_cast<std::size_t>(loc - padded.data()),
                           "invalid JSON: unexpected content after the end of the document"};
    return root;
}

const Value* Value::find(std::string_view key) const {
    for (const auto& m : members)
        if (m.key == key) return &m.value;
    return nullptr;
}

std::optional<std::string> Value::asString() const {
    if (type == Type::String) return text;
    return std::nullopt;
}

std::optional<std::int64_t> parseInt(std::string_view s) {
    std::int64_t v = 0;
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<std::int64_t> Value::asInt() const {
    if (type == Type::Number || type == Type::String) return parseInt(text);
    return std::nullopt;
}

std::optional<std::uint64_t> Value::asUint() const {
    if (type != Type::Number && type != Type::String) return std::nullopt;
    std::uint64_t v = 0;
    if (text.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
    return v;
}

std::pair<int, int> lineColumn(std::string_view text, std::size_t offset) {
    int line = 1, col = 1;
    for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++line;
            col = 1;
        } else {
            ++col;
        }
    }
    return {line, col};
}

std::string quote(std::string_view text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
    return out;
}

}  // namespace prom::json

#include "store/control.hpp"

#include "common/json.hpp"
#include "common/text.hpp"

namespace prom::store {
namespace {

using json::quote;

/** Longest id, host or name taken from a record; a message may be longer. */
constexpr std::size_t kMaxName = 256;
constexpr std::size_t kMaxMessage = 512;
/** Records are a few hundred bytes; anything much larger is not one of ours. */
constexpr json::Limits kRecordLimits{64u << 10, 4, 64};

std::optional<json::Value> object(std::string_view value) {
    auto parsed = json::parse(value, kRecordLimits);
    if (auto* v = std::get_if<json::Value>(&parsed); v && v->type == json::Type::Object) return std::move(*v);
    return std::nullopt;
}

std::string text(const json::Value& o, const char* key, std::size_t max = kMaxName) {
    const json::Value* v = o.find(key);
    return v && v->type == json::Type::String ? text::sanitize(v->text, max) : std::string{};
}

std::int64_t integer(const json::Value& o, const char* key) {
    const json::Value* v = o.find(key);
    return v ? v->asInt().value_or(0) : 0;
}

std::uint64_t unsignedInteger(const json::Value& o, const char* key) {
    const json::Value* v = o.find(key);
    return v ? v->asUint().value_or(0) : 0;
}

bool flag(const json::Value& o, const char* key) {
    const json::Value* v = o.find(key);
    return v && v->type == json::Type::Bool && v->boolean;
}

std::string field(const char* key, const std::string& value) {
    return std::string(",\"") + key + "\":" + quote(value);
}

std::string field(const char* key, std::int64_t value) {
    return std::string(",\"") + key + "\":" + std::to_string(value);
}

std::string fieldU(const char* key, std::uint64_t value) {
    return std::string(",\"") + key + "\":" + std::to_string(value);
}

std::string fieldB(const char* key, bool value) {
    return std::string(",\"") + key + "\":" + (value ? "true" : "false");
}

}  // namespace

std::string encodeMember(const MemberInfo& m) {
    return "{\"id\":" + quote(m.id) + field("host", m.host) + field("pid", m.pid) + field("role", m.role) +
           field("token", m.token) + fieldU("since_usec", m.sinceUsec) + field("version", m.version) +
           field("mode", m.mode) + fieldB("paused", m.paused) + field("last_error", m.lastError) +
           fieldU("last_error_usec", m.lastErrorUsec) + "}";
}

MemberInfo decodeMember(std::string_view id, std::string_view value) {
    MemberInfo m;
    m.id = text::sanitize(id, kMaxName);
    auto o = object(value);
    if (!o) return m;
    m.host = text(*o, "host");
    m.pid = integer(*o, "pid");
    m.role = text(*o, "role", 32);
    m.token = integer(*o, "token");
    m.sinceUsec = unsignedInteger(*o, "since_usec");
    m.version = text(*o, "version", 64);
    m.mode = text(*o, "mode", 16);
    m.paused = flag(*o, "paused");
    m.lastError = text(*o, "last_error", kMaxMessage);
    m.lastErrorUsec = unsignedInteger(*o, "last_error_usec");
    return m;
}

const char* toString(ControlOp op) {
    switch (op) {
        case ControlOp::Switchover: return "switchover";
        case ControlOp::Resign: return "resign";
        case ControlOp::Pause: return "pause";
        case ControlOp::Resume: return "resume";
    }
    return "?";
}

std::optional<ControlOp> controlOpFrom(std::string_view name) {
    for (ControlOp op : {ControlOp::Switchover, ControlOp::Resign, ControlOp::Pause, ControlOp::Resume})
        if (name == toString(op)) return op;
    return std::nullopt;
}

std::string encodeRequest(const ControlRequest& r) {
    return std::string("{\"op\":") + quote(toString(r.op)) + field("target", r.target) + field("token", r.token) +
           field("by", r.by) + "}";
}

std::optional<ControlRequest> decodeRequest(std::string_view id, std::string_view value) {
    auto o = object(value);
    if (!o) return std::nullopt;
    const json::Value* op = o->find("op");
    if (!op || op->type != json::Type::String) return std::nullopt;
    auto kind = controlOpFrom(op->text);
    if (!kind) return std::nullopt;
    ControlRequest r;
    r.id = text::sanitize(id, kMaxName);
    r.op = *kind;
    r.target = text(*o, "target");
    r.token = integer(*o, "token");
    r.by = text(*o, "by");
    // A switchover or resign must say which active it is for (never token 0: not held).
    if ((r.op == ControlOp::Switchover || r.op == ControlOp::Resign) && r.token <= 0) return std::nullopt;
    if ((r.op == ControlOp::Pause || r.op == ControlOp::Resume) && r.target.empty()) return std::nullopt;
    return r;
}

std::string encodeReply(const ControlReply& r) {
    return std::string("{\"ok\":") + (r.ok ? "true" : "false") + field("message", r.message) + field("error", r.error) +
           "}";
}

ControlReply decodeReply(std::string_view id, std::string_view value) {
    ControlReply r;
    r.id = text::sanitize(id, kMaxName);
    if (auto o = object(value)) {
        r.ok = flag(*o, "ok");
        r.message = text(*o, "message", kMaxMessage);
        r.error = text(*o, "error", 128);
    } else {
        r.message = "unreadable reply";
    }
    return r;
}

std::string encodePause(const ClusterPause& p) {
    return "{\"by\":" + quote(p.by) + fieldU("since_usec", p.sinceUsec) + "}";
}

ClusterPause decodePause(std::string_view value) {
    // The key's existence is the pause: an unreadable value still pauses (fail safe for a
    // maintenance switch), it only loses who set it and when.
    ClusterPause p;
    p.paused = true;
    if (auto o = object(value)) {
        p.by = text(*o, "by");
        p.sinceUsec = unsignedInteger(*o, "since_usec");
    }
    return p;
}

bool applyControlKey(ControlState& state, std::string_view key, const std::optional<std::string>& value,
                     std::int64_t lease, std::int64_t revision) {
    auto under = [&](std::string_view dir) { return key.size() > dir.size() && key.substr(0, dir.size()) == dir; };
    if (key == kPauseKey) {
        state.pause = value ? decodePause(*value) : ClusterPause{};
        return true;
    }
    if (under(kRequestsDir)) {
        std::string id = text::sanitize(key.substr(kRequestsDir.size()), kMaxName);
        if (!value) {
            state.requests.erase(id);
            return true;
        }
        // prom answers a request by deleting its key, named from the id: a key the id does not
        // name back (cut or escaped by sanitize) would never be deleted, and every restarted
        // prom would carry it out again. Not a request, like garbage.
        auto r = id == key.substr(kRequestsDir.size()) ? decodeRequest(id, *value) : std::nullopt;
        if (!r) {
            // Not a request prom can act on; it lapses with its writer's lease.
            state.requests.erase(id);
            return true;
        }
        r->lease = lease;
        r->revision = revision;
        state.requests[id] = *r;
        return true;
    }
    if (under(kRepliesDir)) {
        std::string id = text::sanitize(key.substr(kRepliesDir.size()), kMaxName);
        if (!value)
            state.replies.erase(id);
        else
            state.replies[id] = decodeReply(id, *value);
        return true;
    }
    return false;
}

}  // namespace prom::store

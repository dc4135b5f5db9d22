#pragma once
// What the store holds for operators beside the election (promctl(1), prom(8) STORE KEYS):
// each replica's member record (who runs it, where, in which role), and the app's control
// keys: a cluster-wide pause that outlives every prom, and requests (switchover, resign,
// pause, resume) that promctl writes from any node and the replica they name carries out.
//
// Keys under PREFIX/APP/ (etcd):
//   members/ID            a MemberInfo (JSON), on the replica's lease: gone = the replica is down
//   control/pause         a ClusterPause (JSON), on no lease: it stays until resumed
//   control/requests/RID  a ControlRequest (JSON), on the requester's lease
//   control/replies/RID   a ControlReply (JSON), on the requester's lease
// Everything read back is sanitized: anyone with write access to the prefix can write it.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace prom::store {

struct MemberInfo {
    std::string id;
    std::string host;
    std::int64_t pid = 0;
    std::string role;            ///< "" = not said (a prom before 1.1 wrote only its id)
    std::int64_t token = 0;      ///< the fencing token of the leader key it holds or follows
    std::uint64_t sinceUsec = 0;  ///< last role transition, CLOCK_REALTIME µs
    std::string version;
    std::string mode;            ///< "lease" or "fast"
    bool paused = false;         ///< paused, by itself or by the cluster
    std::string lastError;
    std::uint64_t lastErrorUsec = 0;
    bool operator==(const MemberInfo&) const = default;
};

std::string encodeMember(const MemberInfo& m);
/** Lenient: a value that is not a JSON object (an older prom wrote its bare id) gives a
 *  record with only the id. */
MemberInfo decodeMember(std::string_view id, std::string_view value);

enum class ControlOp { Switchover, Resign, Pause, Resume };
const char* toString(ControlOp op);
std::optional<ControlOp> controlOpFrom(std::string_view name);

struct ControlRequest {
    std::string id;            ///< the key's last segment: unique per request
    ControlOp op = ControlOp::Resign;
    /** Switchover: the successor ("" = the best passive); pause/resume: the replica. */
    std::string target;
    /** Switchover/resign: the fencing token of the active it is meant for, so that a request
     *  that reaches a later active (the role moved meanwhile) is refused, not obeyed. */
    std::int64_t token = 0;
    std::string by;            ///< who asked (user@host), for the journal
    std::int64_t lease = 0;    ///< the requester's lease (from the key): the reply goes on it
    std::int64_t revision = 0;  ///< the request key's mod revision
};

std::string encodeRequest(const ControlRequest& r);
/** nullopt when the value is not a request (the caller says so and deletes it). */
std::optional<ControlRequest> decodeRequest(std::string_view id, std::string_view value);

struct ControlReply {
    std::string id;
    bool ok = false;
    std::string message;
    std::string error;  ///< the refusal's D-Bus error name (org.prom.Prom1.Error.*), as over D-Bus
};

std::string encodeReply(const ControlReply& r);
ControlReply decodeReply(std::string_view id, std::string_view value);

struct ClusterPause {
    bool paused = false;
    std::string by;
    std::uint64_t sinceUsec = 0;
};

std::string encodePause(const ClusterPause& p);
ClusterPause decodePause(std::string_view value);

/** The control keys as one replica last read or watched them. */
struct ControlState {
    ClusterPause pause;
    std::map<std::string, ControlRequest> requests;
    std::map<std::string, ControlReply> replies;
};

/** Key names under PREFIX/APP/. */
inline constexpr std::string_view kControlDir = "control/";
inline constexpr std::string_view kPauseKey = "control/pause";
inline constexpr std::string_view kRequestsDir = "control/requests/";
inline constexpr std::string_view kRepliesDir = "control/replies/";

/** Applies one key's new value (nullopt = deleted) to a control state; the key is relative to
 *  PREFIX/APP/. False when the key is not a control key. */
bool applyControlKey(ControlState& state, std::string_view key, const std::optional<std::string>& value,
                     std::int64_t lease, std::int64_t revision);

}  // namespace prom::store

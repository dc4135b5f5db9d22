#pragma once
// The environment of an action, whoever runs it: prom's ScriptRunner and ActionDriver, and the
// fence (prom-fence and sd::Fence, which link nothing of actions/ but this header).
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace prom::actions {

/** CREDENTIALS_DIRECTORY points at the store password (LoadCredential=); NOTIFY_SOCKET would let
 *  a script send READY=1 or WATCHDOG=1 for prom; WATCHDOG_*, LISTEN_* describe prom's process,
 *  not the action's; JOURNAL_STREAM would claim the action's stderr is the journal. */
inline const std::vector<std::string>& scrubbedEnvironment() {
    static const std::vector<std::string> keys = {"CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                                                  "WATCHDOG_PID",          "LISTEN_FDS",    "LISTEN_PID",
                                                  "LISTEN_FDNAMES",        "JOURNAL_STREAM"};
    return keys;
}

inline bool scrubbed(std::string_view key) {
    const auto& k = scrubbedEnvironment();
    return std::find(k.begin(), k.end(), key) != k.end();
}

/** What every action gets (DESIGN.md §1), whoever runs it: prom, or the fence while prom is
 *  down (which adds PROM_FENCE=1). */
inline std::map<std::string, std::string> promEnvironment(const std::string& role, const std::string& self,
                                                          const std::string& app, const std::string& leader,
                                                          std::int64_t token, const std::string& peer) {
    return {{"PROM_ROLE", role},  {"PROM_PEER_ID", peer}, {"PROM_REPLICA_ID", self},
            {"PROM_APP", app},    {"PROM_LEADER", leader}, {"PROM_FENCING_TOKEN", std::to_string(token)}};
}

}  // namespace prom::actions

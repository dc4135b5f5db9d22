#pragma once
// The environment variables no action gets, whoever runs it: prom's ScriptRunner and the fence
// (prom-fence, which links nothing of prom but this header).
#include <algorithm>
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

}  // namespace prom::actions

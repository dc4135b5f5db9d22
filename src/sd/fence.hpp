#pragma once
// prom's side of the fence held by PID 1 (prom(8), FENCE): while this replica may be active,
// keep the fence file in RuntimeDirectory= current (deadline on CLOCK_BOOTTIME, fencing token,
// resolved ensure-passive); remove it once the replica is passive. prom-fence, run by systemd
// when prom dies, arms a timer from it.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "core/election.hpp"
#include "sd/fence_file.hpp"

namespace prom::sd {

/** Writes and removes this replica's fence file as its role and deadline change. */
class Fence {
public:
    struct Settings {
        std::string livePath;   ///< $RUNTIME_DIRECTORY/fence
        std::string armedPath;  ///< armedPathFor(ID): prom-fence's armed copy, cancelled by prom; "" = none
        std::string replica;
        std::string app;
        std::chrono::milliseconds actionTimeout{30000};
    };
    explicit Fence(Settings s) : m_s(std::move(s)) {}

    /** Call after every batch of election events. Starting: leaves a previous run's file alone
     *  (prom-fence armed it; it stays valid until this run knows better). Passive: removes the
     *  file and the armed copy. Promoting/Active with a deadline: writes the file when anything
     *  in it changed, and cancels a copy armed while prom was down; Demoting/Stopping: the same,
     *  but only for a fence this run set up (a passive being stopped fences nothing). */
    void update(core::Role role, std::optional<core::TimePoint> deadline, std::int64_t token, const std::string& leader,
                const config::Action& ensurePassive);

    /** Where prom-fence arms its copy for replica id: kArmedDirectory/ID under systemd, "" (no
     *  copy to cancel) outside it, so that a prom run by hand or by a test never cancels the
     *  fence of the prom@ID.service on the same host. */
    static std::string armedPathFor(const std::string& id);

    /** What the fence file says now, nullopt when there is none (for tests and logs). */
    const std::optional<FenceRecord>& written() const { return m_written; }

    /** The record for these inputs; the deadline converted from CLOCK_MONOTONIC to CLOCK_BOOTTIME
     *  with the offset given (boottime - monotonic, µs). nullopt when the action cannot be fenced. */
    static std::optional<FenceRecord> recordFor(const Settings& s, core::TimePoint deadline, std::int64_t token,
                                                const std::string& leader, const config::Action& ensurePassive,
                                                std::int64_t boottimeMinusMonotonicUsec);

private:
    void clear();

    Settings m_s;
    std::optional<FenceRecord> m_written;
    bool m_cleared = false;         ///< the file and the armed copy are gone (passive)
    bool m_armedCancelled = false;  ///< this run removed a copy armed while prom was down
    bool m_warned = false;
};

}  // namespace prom::sd

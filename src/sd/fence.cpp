#include "sd/fence.hpp"

#include "actions/environment.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"

namespace prom::sd {
namespace {

bool removeFile(const std::string& path) {
    if (path.empty()) return true;
    if (unlink(path.c_str()) == 0 || errno == ENOENT) return true;
    log::warning("fence: cannot remove " + path + ": " + std::strerror(errno));
    return false;
}

}  // namespace

std::optional<FenceRecord> Fence::recordFor(const Settings& s, core::TimePoint deadline, std::int64_t token,
                                            const std::string& leader, const config::Action& ensurePassive,
                                            std::int64_t boottimeMinusMonotonicUsec) {
    FenceRecord r;
    r.replica = s.replica;
    r.app = s.app;
    r.token = token;
    r.timeoutMs = static_cast<std::uint64_t>(std::max<std::int64_t>(s.actionTimeout.count(), 1));
    // Set by systemd for every process of one start of prom@ID, ExecStopPost= included.
    if (const char* inv = std::getenv("INVOCATION_ID")) r.invocation = inv;
    std::int64_t monoUsec = std::chrono::duration_cast<std::chrono::microseconds>(deadline.time_since_epoch()).count();
    r.deadlineBoottimeUsec = static_cast<std::uint64_t>(std::max<std::int64_t>(monoUsec + boottimeMinusMonotonicUsec, 0));
    switch (ensurePassive.kind) {
        case config::Action::Kind::None: return std::nullopt;
        case config::Action::Kind::Shell: r.action = {FenceAction::Kind::Shell, {ensurePassive.command}}; break;
        case config::Action::Kind::Exec: r.action = {FenceAction::Kind::Exec, ensurePassive.argv}; break;
        case config::Action::Kind::StartUnit: r.action = {FenceAction::Kind::StartUnit, {ensurePassive.unit}}; break;
        case config::Action::Kind::StopUnit: r.action = {FenceAction::Kind::StopUnit, {ensurePassive.unit}}; break;
    }
    // The environment prom gives ensure-passive (DESIGN.md §1), and PROM_FENCE=1 so that a
    // script can tell that systemd runs it while prom is down.
    r.env = actions::promEnvironment("demoting", s.replica, s.app, leader, token, "");
    r.env["PROM_FENCE"] = "1";
    return r;
}

std::string Fence::armedPathFor(const std::string& id) {
    // systemd sets INVOCATION_ID for every process it starts; prom-fence only runs under it.
    if (!std::getenv("INVOCATION_ID")) return "";
    return std::string(kArmedDirectory) + "/" + id;
}

void Fence::clear() {
    if (m_cleared) return;
    // The file first: prom-fence treats a copy without a newer live file as "still armed".
    bool ok = removeFile(m_s.livePath);
    ok = removeFile(m_s.armedPath) && ok;
    if (ok) m_cleared = true;
    m_written.reset();
}

void Fence::update(core::Role role, std::optional<core::TimePoint> deadline, std::int64_t token, const std::string& leader,
                   const config::Action& ensurePassive) {
    switch (role) {
        case core::Role::Starting: return;
        case core::Role::Passive: return clear();
        case core::Role::Promoting:
        case core::Role::Active:
        case core::Role::Demoting:
        case core::Role::Stopping: break;
    }
    // Without a deadline (the lease was abandoned while demoting) the last written one stands.
    if (!deadline) return;
    // Demoting and stopping only keep a fence this run set up while it held the role: a passive
    // that is being stopped has a lease and a deadline too, but no replica to fence.
    if ((role == core::Role::Demoting || role == core::Role::Stopping) && !m_written) return;
    // The daemon's clock (sd::EventLoop::now) is CLOCK_BOOTTIME already: no conversion.
    auto r = recordFor(m_s, *deadline, token, leader, ensurePassive, 0);
    if (!r) {
        if (!m_warned) log::warning("fence: this replica has no ensure-passive action: systemd cannot demote it when prom is down");
        m_warned = true;
        return;
    }
    // The two clocks are read at slightly different instants: a few µs of jitter is no change.
    if (m_written) {
        auto d = static_cast<std::int64_t>(r->deadlineBoottimeUsec) - static_cast<std::int64_t>(m_written->deadlineBoottimeUsec);
        if (d > -1000 && d < 1000) r->deadlineBoottimeUsec = m_written->deadlineBoottimeUsec;
        if (*r == *m_written) return;
    }
    std::string error;
    if (!writeFenceFile(m_s.livePath, *r, &error)) {
        log::warning("fence: " + error + ": systemd would demote this replica at an older deadline if prom died");
        return;
    }
    m_written = r;
    m_cleared = false;
    // prom is back and renewing: a copy armed by prom-fence while it was down is void. Removed
    // after the new file is in place, so prom-fence never sees neither.
    if (!m_armedCancelled) m_armedCancelled = removeFile(m_s.armedPath);
}

}  // namespace prom::sd

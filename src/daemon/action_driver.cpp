#include "daemon/action_driver.hpp"

#include "actions/environment.hpp"
#include "common/log.hpp"

namespace prom::daemon {

ActionDriver::ActionDriver(actions::ActionRunner& runner, const config::Config& config, std::string self, Feed feed,
                           ExtendTimeout extendTimeout)
    : m_runner(runner),
      m_config(config),
      m_self(std::move(self)),
      m_feed(std::move(feed)),
      m_extendTimeout(std::move(extendTimeout)) {}

std::map<std::string, std::string> ActionDriver::environment(const core::RunAction& e) const {
    return actions::promEnvironment(core::toString(e.role), m_self, m_config.appName, e.leader, e.token, e.peer);
}

bool ActionDriver::apply(const core::Effect& effect) {
    if (std::holds_alternative<core::CancelAction>(effect)) {
        m_runner.cancel();
        return true;
    }
    auto* e = std::get_if<core::RunAction>(&effect);
    if (!e) return false;
    const auto& s = m_config.settingsOf(m_self);
    const config::Action& action = e->kind == core::ActionKind::EnsureActive    ? s.ensureActive
                                   : e->kind == core::ActionKind::EnsurePassive ? s.ensurePassive
                                                                                : m_config.settingsOf(e->peer).restartProm;
    if (e->kind == core::ActionKind::RestartPeer)
        log::warning("replica " + e->peer + " has had no member key for longer than the timeout: running restart-prom");
    std::string name = core::toString(e->kind);
    if ((e->role == core::Role::Starting || e->role == core::Role::Stopping) && m_extendTimeout)
        // sd_notify(3): a slow action at start or stop must not hit TimeoutStartSec/StopSec.
        m_extendTimeout(static_cast<unsigned long long>(m_config.actions.timeout.count() + 5000) * 1000);
    log::debug("running " + name + ": " + action.describe());
    auto kind = e->kind;
    auto id = e->id;
    TimePoint started = m_clock ? m_clock() : TimePoint{};
    m_runner.run(name, action, environment(*e), m_config.actions.timeout,
                 [this, kind, name, id, started](core::ActionOutcome outcome, const std::string& detail) {
                     bool ok = outcome == core::ActionOutcome::AlreadyInMode || outcome == core::ActionOutcome::Switched;
                     if (m_finished && outcome != core::ActionOutcome::Cancelled) m_finished(name, ok, m_clock() - started);
                     if (!ok && outcome != core::ActionOutcome::Cancelled) log::warning(name + " failed: " + detail);
                     else if (outcome == core::ActionOutcome::Switched) log::info(name + ": " + detail);
                     m_feed(core::ActionFinished{kind, outcome, detail, id});
                 });
    return true;
}

}  // namespace prom::daemon

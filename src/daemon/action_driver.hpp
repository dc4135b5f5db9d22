#pragma once
// Carries the core's RunAction / CancelAction to an actions::ActionRunner: picks the configured
// action of this replica (or of the peer, for restart-prom), builds its PROM_* environment and
// brings the outcome back as ActionFinished naming the run.
#include <functional>
#include <string>

#include "actions/runner.hpp"
#include "config/config.hpp"
#include "core/election.hpp"

namespace prom::daemon {

class ActionDriver {
public:
    using Feed = std::function<void(core::Event)>;
    /** A run at start or stop may take longer than systemd waits: extend by this many µs. */
    using ExtendTimeout = std::function<void(unsigned long long usec)>;

    ActionDriver(actions::ActionRunner& runner, const config::Config& config, std::string self, Feed feed,
                 ExtendTimeout extendTimeout);

    /** Starts or cancels an action for an action effect; false when the effect is not one. */
    bool apply(const core::Effect& effect);

    /** Called when a run ends (not when cancelled): its name, success, and duration (metrics). */
    using Finished = std::function<void(const std::string& name, bool ok, Duration took)>;
    void observe(std::function<TimePoint()> now, Finished finished) {
        m_clock = std::move(now);
        m_finished = std::move(finished);
    }

    /** The environment an action runs with (PROM_ROLE, PROM_REPLICA_ID, ...). */
    std::map<std::string, std::string> environment(const core::RunAction& run) const;

private:
    actions::ActionRunner& m_runner;
    const config::Config& m_config;
    std::string m_self;
    Feed m_feed;
    ExtendTimeout m_extendTimeout;
    std::function<TimePoint()> m_clock;
    Finished m_finished;
};

}  // namespace prom::daemon

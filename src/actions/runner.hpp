#pragma once
// Runs ensure-active / ensure-passive actions one at a time (DESIGN.md §1): a shell string via
// /bin/sh -c, an argv array via exec, in its own process group, killed at its timeout, with
// stdout/stderr drained continuously into the log (bounded). Unit actions are in unit_runner.
#include <functional>
#include <map>
#include <string>

#include "config/config.hpp"
#include "core/election.hpp"
#include "sd/event_loop.hpp"

namespace prom::actions {

/** Starts an action and reports its outcome; one run at a time. */
class ActionRunner {
public:
    using Done = std::function<void(core::ActionOutcome, const std::string& detail)>;
    virtual ~ActionRunner() = default;
    virtual void run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>& env,
                     std::chrono::milliseconds timeout, Done done) = 0;
    /** Kills the running action; its Done reports Cancelled. */
    virtual void cancel() = 0;
    virtual bool busy() const = 0;
};

class ScriptRunner : public ActionRunner {
public:
    explicit ScriptRunner(sd::EventLoop& loop);
    ~ScriptRunner() override;
    void run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>& env,
             std::chrono::milliseconds timeout, Done done) override;
    void cancel() override;
    bool busy() const override { return m_pid > 0; }

    /** Bytes of one run's output written to the log; the rest is read and dropped. */
    static constexpr std::size_t kLogLimit = 64 * 1024;

private:
    struct Output;
    void finish(core::ActionOutcome outcome, const std::string& detail);
    void killGroup();

    sd::EventLoop& m_loop;
    pid_t m_pid = 0;
    std::string m_name;
    Done m_done;
    sd::Source m_child;
    sd::Source m_timer;
    bool m_timedOut = false;
    bool m_cancelled = false;
    std::map<int, std::unique_ptr<Output>> m_outputs;  ///< pipes still open (may outlive the run)
};

}  // namespace prom::actions

#pragma once
// Runs ensure-active / ensure-passive actions one at a time (DESIGN.md §1): a shell string via
// /bin/sh -c, an argv array via exec, in its own process group, killed at its timeout, with
// stdout/stderr drained continuously into the log (rate-limited per replica). An action gets
// stdin from /dev/null, its output pipe and no other descriptor of prom, and prom's environment
// without what systemd hands to prom itself (credentials, notify socket, watchdog, sockets).
// Unit actions are in unit_runner.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

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

/** How much action output reaches the log per replica (one runner per replica) and window;
 *  the rest is read and dropped, and counted. */
struct OutputLimit {
    std::size_t lines = 120;
    std::size_t bytes = 32 * 1024;
    std::chrono::milliseconds window = std::chrono::minutes(1);
};

class ScriptRunner : public ActionRunner {
public:
    explicit ScriptRunner(sd::EventLoop& loop, OutputLimit limit = {});
    ~ScriptRunner() override;
    void run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>& env,
             std::chrono::milliseconds timeout, Done done) override;
    void cancel() override;
    bool busy() const override { return m_pid > 0; }

    /** Environment variables prom never passes to an action (systemd.exec(5) sets them for
     *  prom's own process: the unit's credentials, sd_notify, watchdog, socket activation). */
    static const std::vector<std::string>& scrubbedEnvironment();

private:
    struct Output;
    void finish(core::ActionOutcome outcome, const std::string& detail);
    void killGroup();
    /** Logs one line of action output if the window's budget allows, else counts it. */
    void logLine(const std::string& action, const std::string& line);
    /** Ends the current window: logs how much was dropped in it. */
    void closeWindow();

    sd::EventLoop& m_loop;
    OutputLimit m_limit;
    core::TimePoint m_windowStart{};
    std::size_t m_windowLines = 0;
    std::size_t m_windowBytes = 0;
    std::size_t m_droppedLines = 0;
    std::size_t m_droppedBytes = 0;
    sd::Source m_windowEnd;
    pid_t m_pid = 0;
    std::string m_name;
    Done m_done;
    sd::Source m_child;
    sd::Source m_timer;
    bool m_timedOut = false;
    bool m_cancelled = false;
    std::unique_ptr<Output> m_output;  ///< the running action's stdout/stderr pipe
};

}  // namespace prom::actions

#pragma once
// { start-unit = U } / { stop-unit = U } actions: StartUnit/StopUnit (mode "replace") on
// org.freedesktop.systemd1.Manager over the system bus, then wait for the job's JobRemoved
// signal; result "done" is success. A reply lost while systemd re-executes
// (daemon-reexec) is retried until the action's timeout.
#include <sdbus-c++/sdbus-c++.h>

#include <map>
#include <memory>

#include "actions/runner.hpp"
#include "sd/bus.hpp"

namespace prom::actions {

class UnitRunner : public ActionRunner {
public:
    explicit UnitRunner(sd::EventLoop& loop);
    ~UnitRunner() override;
    void run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>& env,
             std::chrono::milliseconds timeout, Done done) override;
    void cancel() override;
    bool busy() const override { return static_cast<bool>(m_done); }

private:
    bool connect(std::string& error);
    void call();
    void finish(core::ActionOutcome outcome, const std::string& detail);
    void onJobRemoved(const sdbus::ObjectPath& job, const std::string& unit, const std::string& result);

    sd::EventLoop& m_loop;
    std::unique_ptr<sd::BusConnection> m_bus;
    std::unique_ptr<sdbus::IProxy> m_manager;
    config::Action m_action;
    std::string m_name;
    std::string m_job;  ///< object path of the job we wait for
    std::map<std::string, std::string> m_finished;  ///< jobs that ended before we knew their path
    Done m_done;
    sd::Source m_timer;
    sd::Source m_retry;
    core::TimePoint m_deadline{};
    std::uint64_t m_generation = 0;
};

/** Runs scripts with ScriptRunner and unit actions with UnitRunner: one action at a time. */
class Runner : public ActionRunner {
public:
    explicit Runner(sd::EventLoop& loop) : m_scripts(loop), m_units(loop) {}
    void run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>& env,
             std::chrono::milliseconds timeout, Done done) override;
    void cancel() override;
    bool busy() const override { return m_scripts.busy() || m_units.busy(); }

private:
    ScriptRunner m_scripts;
    UnitRunner m_units;
};

}  // namespace prom::actions

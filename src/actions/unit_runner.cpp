#include "actions/unit_runner.hpp"

#include "common/log.hpp"

namespace prom::actions {
namespace {
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
}

UnitRunner::UnitRunner(sd::EventLoop& loop) : m_loop(loop) {}
UnitRunner::~UnitRunner() {
    m_manager.reset();
    m_bus.reset();
}

bool UnitRunner::connect(std::string& error) {
    if (m_manager) return true;
    try {
        m_bus = std::make_unique<sd::BusConnection>(m_loop, sd::BusKind::System);
        m_manager = sdbus::createProxy(m_bus->connection(), "org.freedesktop.systemd1", "/org/freedesktop/systemd1");
        m_manager->uponSignal("JobRemoved").onInterface(kManager).call(
            [this](std::uint32_t, const sdbus::ObjectPath& job, const std::string& unit, const std::string& result) {
                onJobRemoved(job, unit, result);
            });
        m_manager->finishRegistration();
        // systemd sends job signals only to subscribed clients.
        m_manager->callMethod("Subscribe").onInterface(kManager);
        return true;
    } catch (const sdbus::Error& e) {
        m_manager.reset();
        m_bus.reset();
        error = "cannot reach systemd on the system bus: " + e.getName() + ": " + e.getMessage();
        return false;
    }
}

void UnitRunner::run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>&,
                     std::chrono::milliseconds timeout, Done done) {
    if (m_done) throw std::logic_error("UnitRunner::run while an action runs: actions must never overlap");
    std::string error;
    if (!connect(error)) return done(core::ActionOutcome::Failed, error);
    m_name = name;
    m_action = action;
    m_done = std::move(done);
    m_job.clear();
    m_finished.clear();
    ++m_generation;
    m_deadline = sd::EventLoop::now() + timeout;
    // A unit that stays "activating" counts against the action's timeout.
    m_timer = m_loop.addTimer(m_deadline, [this] {
        finish(core::ActionOutcome::TimedOut, (m_job.empty() ? "no answer from systemd" : "job " + m_job + " not finished") +
                                                  std::string(" within the action timeout"));
    });
    call();
}

void UnitRunner::call() {
    const char* method = m_action.kind == config::Action::Kind::StartUnit ? "StartUnit" : "StopUnit";
    std::uint64_t gen = m_generation;
    m_manager->callMethodAsync(method)
        .onInterface(kManager)
        .withArguments(m_action.unit, std::string("replace"))
        .uponReplyInvoke([this, gen, method](const sdbus::Error* err, sdbus::ObjectPath job) {
            if (gen != m_generation || !m_done) return;
            if (err) {
                const std::string& n = err->getName();
                // systemctl daemon-reexec drops the connection's pending replies: try again.
                if (n == "org.freedesktop.DBus.Error.NoReply" || n == "org.freedesktop.DBus.Error.Disconnected" ||
                    n == "org.freedesktop.DBus.Error.ServiceUnknown" || n == "org.freedesktop.DBus.Error.Timeout") {
                    log::warning(m_name + ": " + method + " " + m_action.unit + ": " + n + "; retrying");
                    m_retry = m_loop.addTimer(sd::EventLoop::now() + std::chrono::milliseconds(500), [this, gen] {
                        if (gen == m_generation && m_done) call();
                    });
                    return;
                }
                return finish(core::ActionOutcome::Failed, std::string(method) + " " + m_action.unit + ": " + n + ": " + err->getMessage());
            }
            m_job = job;
            log::debug(m_name + ": " + method + " " + m_action.unit + " queued job " + m_job);
            if (auto it = m_finished.find(m_job); it != m_finished.end()) onJobRemoved(job, m_action.unit, it->second);
        });
}

void UnitRunner::onJobRemoved(const sdbus::ObjectPath& job, const std::string& unit, const std::string& result) {
    if (!m_done) return;
    if (m_job.empty()) {
        // The signal may overtake the reply that tells us the job's path.
        if (unit == m_action.unit) m_finished[job] = result;
        return;
    }
    if (job != m_job) return;
    if (result == "done")
        finish(core::ActionOutcome::Switched, std::string(m_action.kind == config::Action::Kind::StartUnit ? "started " : "stopped ") + unit);
    else
        finish(core::ActionOutcome::Failed, "job for " + unit + " finished with result \"" + result + "\"");
}

void UnitRunner::finish(core::ActionOutcome outcome, const std::string& detail) {
    Done done = std::move(m_done);
    m_done = nullptr;
    m_timer.reset();
    m_retry.reset();
    ++m_generation;
    if (done) done(outcome, detail);
}

void UnitRunner::cancel() {
    if (m_done) finish(core::ActionOutcome::Cancelled, "cancelled");
}

void Runner::run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>& env,
                 std::chrono::milliseconds timeout, Done done) {
    if (action.kind == config::Action::Kind::StartUnit || action.kind == config::Action::Kind::StopUnit)
        m_units.run(name, action, env, timeout, std::move(done));
    else
        m_scripts.run(name, action, env, timeout, std::move(done));
}

void Runner::cancel() {
    m_scripts.cancel();
    m_units.cancel();
}

}  // namespace prom::actions

// The script runner on a real sd-event loop with real processes.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "actions/runner.hpp"

using namespace prom;
using namespace std::chrono_literals;

namespace {

struct Outcome {
    core::ActionOutcome outcome{};
    std::string detail;
    bool done = false;
};

config::Action shell(const std::string& cmd) {
    config::Action a;
    a.kind = config::Action::Kind::Shell;
    a.command = cmd;
    return a;
}

Outcome runOnce(const config::Action& a, std::chrono::milliseconds timeout = 5s, std::map<std::string, std::string> env = {},
                std::function<void(actions::ScriptRunner&)> whileRunning = nullptr) {
    static bool blocked = [] {
        sd::EventLoop::blockSignals();
        return true;
    }();
    (void)blocked;
    sd::EventLoop loop;
    actions::ScriptRunner runner(loop);
    Outcome out;
    runner.run("test", a, env, timeout, [&](core::ActionOutcome o, const std::string& d) {
        out = {o, d, true};
        loop.exit(0);
    });
    sd::Source guard = loop.addTimer(sd::EventLoop::now() + 20s, [&] { loop.exit(1); });
    sd::Source during;
    if (whileRunning) during = loop.addTimer(sd::EventLoop::now() + 100ms, [&] { whileRunning(runner); });
    if (!out.done) loop.run();
    return out;
}

std::string tmpFile() {
    char t[] = "/tmp/prom-runner-XXXXXX";
    int fd = mkstemp(t);
    close(fd);
    return t;
}

}  // namespace

TEST(ScriptRunner, MapsPromExitCodes) {
    EXPECT_EQ(runOnce(shell("exit 0")).outcome, core::ActionOutcome::AlreadyInMode);
    EXPECT_EQ(runOnce(shell("exit 2")).outcome, core::ActionOutcome::Switched);
    auto f = runOnce(shell("exit 7"));
    EXPECT_EQ(f.outcome, core::ActionOutcome::Failed);
    EXPECT_EQ(f.detail, "exit status 7");
}

TEST(ScriptRunner, RunsArgvWithoutAShell) {
    std::string out = tmpFile();
    config::Action a;
    a.kind = config::Action::Kind::Exec;
    a.argv = {"/bin/sh", "-c", "printf '%s' \"$0\" > " + out, "a b;c"};
    EXPECT_EQ(runOnce(a).outcome, core::ActionOutcome::AlreadyInMode);
    std::ifstream in(out);
    std::string got((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(got, "a b;c");
}

TEST(ScriptRunner, PassesPromEnvironmentButNotTheNotifySocket) {
    setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
    std::string out = tmpFile();
    auto r = runOnce(shell("echo \"$PROM_ROLE $PROM_FENCING_TOKEN ${NOTIFY_SOCKET:-unset}\" > " + out), 5s,
                     {{"PROM_ROLE", "active"}, {"PROM_FENCING_TOKEN", "42"}});
    unsetenv("NOTIFY_SOCKET");
    EXPECT_EQ(r.outcome, core::ActionOutcome::AlreadyInMode);
    std::ifstream in(out);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "active 42 unset");
}

TEST(ScriptRunner, KillsTheWholeProcessGroupAtTheTimeout) {
    std::string pidFile = tmpFile();
    auto start = sd::EventLoop::now();
    auto r = runOnce(shell("sleep 30 & echo $! > " + pidFile + "; wait"), 300ms);
    EXPECT_EQ(r.outcome, core::ActionOutcome::TimedOut);
    EXPECT_LT(sd::EventLoop::now() - start, 5s);
    std::ifstream in(pidFile);
    pid_t grandchild = 0;
    in >> grandchild;
    ASSERT_GT(grandchild, 0);
    usleep(100000);
    // Dead means gone or a zombie waiting for its new parent to reap it.
    std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
    std::string pid, comm, state;
    stat >> pid >> comm >> state;
    EXPECT_TRUE(!stat || state == "Z") << "the background child survived the timeout: " << state;
}

TEST(ScriptRunner, DrainsAHundredMegabytesOfOutputWithoutBlocking) {
    auto start = sd::EventLoop::now();
    auto r = runOnce(shell("head -c 100000000 /dev/zero | tr '\\0' 'x'; exit 2"), 60s);
    EXPECT_EQ(r.outcome, core::ActionOutcome::Switched);
    EXPECT_LT(sd::EventLoop::now() - start, 30s);
}

TEST(ScriptRunner, CancelReportsCancelled) {
    auto r = runOnce(shell("sleep 30"), 10s, {}, [](actions::ScriptRunner& runner) { runner.cancel(); });
    EXPECT_EQ(r.outcome, core::ActionOutcome::Cancelled);
}

TEST(ScriptRunner, AMissingProgramIsAFailureNotACrash) {
    config::Action a;
    a.kind = config::Action::Kind::Exec;
    a.argv = {"/nonexistent/ensure"};
    auto r = runOnce(a);
    EXPECT_EQ(r.outcome, core::ActionOutcome::Failed);
    EXPECT_NE(r.detail.find("No such file"), std::string::npos) << r.detail;
}

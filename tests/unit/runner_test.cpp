// The script runner on a real sd-event loop with real processes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
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

namespace {

int openFdCount() {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        (void)e;
        ++n;
    }
    return n;
}

}  // namespace

TEST(ScriptRunner, ActionsGetNoCredentialsDirectoryNorSystemdHandles) {
    // What systemd gives prom@.service (systemd.exec(5)): the credentials of the unit (the store
    // password) and handles that belong to prom's own process, not to its actions.
    const std::vector<std::string> scrubbed = {"CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                                               "WATCHDOG_PID",          "LISTEN_FDS",    "LISTEN_PID",
                                               "LISTEN_FDNAMES",        "JOURNAL_STREAM"};
    for (const auto& k : scrubbed) setenv(k.c_str(), "/run/credentials/prom@0.service", 1);
    setenv("PROM_TEST_KEPT", "kept", 1);
    std::string out = tmpFile();
    std::string script = "env > " + out;
    auto r = runOnce(shell(script));
    for (const auto& k : scrubbed) unsetenv(k.c_str());
    unsetenv("PROM_TEST_KEPT");
    EXPECT_EQ(r.outcome, core::ActionOutcome::AlreadyInMode);
    std::ifstream in(out);
    std::string env((std::istreambuf_iterator<char>(in)), {});
    for (const auto& k : scrubbed) EXPECT_EQ(env.find(k + "="), std::string::npos) << k << " reached the action";
    EXPECT_NE(env.find("PROM_TEST_KEPT=kept"), std::string::npos) << "the rest of the environment is passed on";
}

TEST(ScriptRunner, ActionsInheritNoDescriptorButStdio) {
    // A descriptor some library of prom opened without O_CLOEXEC must not reach the action.
    int leaky = open("/dev/null", O_RDONLY);
    ASSERT_GE(leaky, 3);
    auto r = runOnce(shell("[ -e /proc/self/fd/" + std::to_string(leaky) + " ] && exit 7; exit 0"));
    close(leaky);
    EXPECT_EQ(r.outcome, core::ActionOutcome::AlreadyInMode)
        << r.detail << ": fd " << leaky << " leaked into the action";
}

/** One loop and one runner for several runs, as in the daemon. The loop is stepped with
 *  sd_event_run(): an sd-event loop cannot run again after sd_event_exit(). */
struct Replica {
    sd::EventLoop loop;
    actions::ScriptRunner runner;
    explicit Replica(actions::OutputLimit limit = {}) : runner(loop, limit) {}
    Outcome run(const config::Action& a, std::chrono::milliseconds timeout = 5s) {
        Outcome out;
        runner.run("test", a, {}, timeout, [&](core::ActionOutcome o, const std::string& d) { out = {o, d, true}; });
        auto deadline = sd::EventLoop::now() + 20s;
        while (!out.done && sd::EventLoop::now() < deadline) sd_event_run(loop.get(), 100000);
        return out;
    }
    /** Runs the loop for a while (timers, output still arriving). */
    void spin(std::chrono::milliseconds d) {
        auto until = sd::EventLoop::now() + d;
        while (sd::EventLoop::now() < until) sd_event_run(loop.get(), 10000);
    }
};

TEST(ScriptRunner, ClosesTheOutputPipeWhenTheActionExitsEvenIfABackgroundChildHoldsIt) {
    // Before: the pipe stayed open until the background child exited, one fd per run, until
    // prom hit its nofile limit and could not run actions any more.
    sd::EventLoop::blockSignals();
    std::string pidFile = tmpFile();
    Replica replica;
    replica.run(shell("exit 0"));  // the loop's own descriptors (signalfd, pidfd) are made once
    int before = openFdCount();
    for (int i = 0; i < 3; ++i) {
        auto r = replica.run(shell("echo started; sleep 30 & echo $! >> " + pidFile + "; exit 0"));
        EXPECT_EQ(r.outcome, core::ActionOutcome::AlreadyInMode);
    }
    replica.spin(200ms);
    EXPECT_EQ(openFdCount(), before) << "output pipes of finished actions are still open";
    std::ifstream in(pidFile);
    for (pid_t p; in >> p;) kill(p, SIGKILL);
}

TEST(ScriptRunner, LogsAtMostTheOutputLimitPerWindowAcrossRunsAndCountsWhatWasDropped) {
    // Before: 64 KiB per run, so an action at the monitor interval could fill the journal
    // (about 5 GB a day) and use up journald's rate limit shared with prom's role changes.
    sd::EventLoop::blockSignals();
    Replica replica({.lines = 5, .bytes = 1 << 20, .window = 600ms});
    testing::internal::CaptureStderr();
    replica.run(shell("echo a1; echo a2; echo a3"));
    replica.run(shell("echo b1; echo b2; echo b3; echo b4"));
    replica.spin(900ms);  // the window ends: the count of what was dropped is logged
    replica.run(shell("echo c1"));
    std::string log = testing::internal::GetCapturedStderr();
    for (const char* kept : {"test: a1", "test: a3", "test: b1", "test: b2", "test: c1"})
        EXPECT_NE(log.find(kept), std::string::npos) << kept << " missing in:\n" << log;
    for (const char* dropped : {"test: b3", "test: b4"})
        EXPECT_EQ(log.find(dropped), std::string::npos) << dropped << " logged beyond the limit:\n" << log;
    EXPECT_NE(log.find("2 lines (6 bytes) of action output were not logged"), std::string::npos) << log;
    EXPECT_LT(log.find("2 lines (6 bytes)"), log.find("test: c1")) << "the count comes when the window ends:\n" << log;
}

TEST(ScriptRunner, CountsBytesAgainstTheOutputLimitAndDropsTheRestOfTheWindow) {
    sd::EventLoop::blockSignals();
    Replica replica({.lines = 1000, .bytes = 100, .window = 60s});
    testing::internal::CaptureStderr();
    replica.run(shell("head -c 4000 /dev/zero | tr '\\0' 'x'; echo; echo after"));
    std::string log = testing::internal::GetCapturedStderr();
    EXPECT_EQ(log.find("test: after"), std::string::npos) << log;
    EXPECT_NE(log.find("action output beyond 1000 lines or 100 bytes per 60 s is not logged"), std::string::npos)
        << log;
}

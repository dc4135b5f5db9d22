// The fence file (prom(8), FENCE): its format, prom's writer (sd::Fence) and the prom-fence
// program's arm/demote paths that need no systemd (deadline passed, renewed, clean exit).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sd/fence.hpp"
#include "sd/fence_file.hpp"
#include "sd/notifier.hpp"

using namespace prom;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

sd::FenceRecord sample() {
    sd::FenceRecord r;
    r.replica = "1";
    r.app = "votingapp";
    r.deadlineBoottimeUsec = 123456789012;
    r.token = 42;
    r.action = {sd::FenceAction::Kind::Exec, {"/usr/lib/votingapp/ensure", "1", "pass\\ive\nwith newline\tand tab"}};
    r.env = {{"PROM_ROLE", "demoting"}, {"PROM_LEADER", ""}, {"WEIRD", "a=b\\c\r\n"}};
    r.timeoutMs = 1500;
    r.invocation = "0123456789abcdef0123456789abcdef";
    return r;
}

config::Action shell(const std::string& cmd) {
    config::Action a;
    a.kind = config::Action::Kind::Shell;
    a.command = cmd;
    return a;
}

config::Action stopUnit(const std::string& u) {
    config::Action a;
    a.kind = config::Action::Kind::StopUnit;
    a.unit = u;
    return a;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

class FenceOnDisk : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/prom-fence-test-XXXXXX";
        m_dir = mkdtemp(tmpl);
        fs::create_directories(m_dir + "/run");
        fs::create_directories(m_dir + "/armed");
    }
    void TearDown() override { fs::remove_all(m_dir); }
    std::string live() const { return m_dir + "/run/fence"; }
    std::string armed() const { return m_dir + "/armed/1"; }
    sd::Fence::Settings settings() const { return {live(), armed(), "1", "votingapp", 2000ms}; }

    /** Runs prom-fence with RUNTIME_DIRECTORY and PROM_FENCE_DIRECTORY pointing here. */
    int promFence(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {}) {
        std::string cmd = "env RUNTIME_DIRECTORY=" + m_dir + "/run PROM_FENCE_DIRECTORY=" + m_dir + "/armed";
        for (const auto& [k, v] : env) cmd += " " + k + "=" + v;
        cmd += " " PROM_FENCE_BINARY;
        for (const auto& a : args) cmd += " '" + a + "'";
        int status = std::system((cmd + " 2>" + m_dir + "/stderr").c_str());
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    sd::FenceRecord scriptFence(std::int64_t deadlineFromNowUsec) const {
        sd::FenceRecord r;
        r.replica = "1";
        r.app = "votingapp";
        r.deadlineBoottimeUsec = static_cast<std::uint64_t>(static_cast<std::int64_t>(sd::boottimeUsec()) + deadlineFromNowUsec);
        r.token = 7;
        r.action = {sd::FenceAction::Kind::Shell, {"echo \"$PROM_ROLE $PROM_FENCING_TOKEN $PROM_FENCE\" >> " + m_dir + "/demoted"}};
        r.env = {{"PROM_ROLE", "demoting"}, {"PROM_FENCING_TOKEN", "7"}, {"PROM_FENCE", "1"}};
        r.timeoutMs = 2000;
        return r;
    }
    std::string m_dir;
};

}  // namespace

TEST(FenceFile, RoundTripsEveryFieldIncludingEscapes) {
    auto r = sample();
    std::string error;
    auto back = sd::parseFence(sd::formatFence(r), &error);
    ASSERT_TRUE(back) << error;
    EXPECT_EQ(*back, r);
}

TEST(FenceFile, RoundTripsEachActionKind) {
    for (auto kind : {sd::FenceAction::Kind::Shell, sd::FenceAction::Kind::StartUnit, sd::FenceAction::Kind::StopUnit}) {
        auto r = sample();
        r.action = {kind, {"demo@1.service"}};
        auto back = sd::parseFence(sd::formatFence(r));
        ASSERT_TRUE(back);
        EXPECT_EQ(back->action, r.action);
    }
}

TEST(FenceFile, RejectsTruncatedMalformedAndForeignText) {
    std::string good = sd::formatFence(sample());
    std::string error;
    EXPECT_FALSE(sd::parseFence(good.substr(0, good.size() - 4), &error));
    EXPECT_NE(error.find("truncated"), std::string::npos) << error;
    EXPECT_FALSE(sd::parseFence("", &error));
    EXPECT_FALSE(sd::parseFence("prom-fence 2\nend\n", &error));
    EXPECT_FALSE(sd::parseFence("lease 12345\n", &error));
    std::string badNumber = good;
    badNumber.replace(badNumber.find("deadline-boottime-usec ") + 23, 1, "x");
    EXPECT_FALSE(sd::parseFence(badNumber, &error));
    EXPECT_FALSE(sd::parseFence(good + "arg late\n", &error));
    std::string unknown = good;
    unknown.insert(unknown.find("end\n"), "surprise 1\n");
    EXPECT_FALSE(sd::parseFence(unknown, &error));
    std::string badEscape = good;
    badEscape.insert(badEscape.find("end\n"), "arg \\q\n");
    EXPECT_FALSE(sd::parseFence(badEscape, &error));
    // A unit action must name exactly one unit; an exec action needs a program.
    auto r = sample();
    r.action = {sd::FenceAction::Kind::StopUnit, {}};
    EXPECT_FALSE(sd::parseFence(sd::formatFence(r), &error));
    r.action = {sd::FenceAction::Kind::Exec, {}};
    EXPECT_FALSE(sd::parseFence(sd::formatFence(r), &error));
    EXPECT_FALSE(sd::parseFence(std::string(300 * 1024, 'a'), &error));
}

TEST_F(FenceOnDisk, WriteIsAtomicAndLeavesNoTemporary) {
    ASSERT_TRUE(sd::writeFenceFile(live(), sample()));
    auto back = sd::readFenceFile(live());
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, sample());
    EXPECT_FALSE(fs::exists(live() + ".tmp"));
    struct stat st {};
    ASSERT_EQ(stat(live().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(FenceOnDisk, ReadingAnAbsentFileIsNoErrorButAGarbledOneIs) {
    std::string error = "unset";
    EXPECT_FALSE(sd::readFenceFile(live(), &error));
    EXPECT_EQ(error, "");
    std::ofstream(live()) << "garbage\n";
    EXPECT_FALSE(sd::readFenceFile(live(), &error));
    EXPECT_NE(error, "");
}

TEST_F(FenceOnDisk, ActiveReplicaWritesDeadlineOnBoottimeTokenAndResolvedEnsurePassive) {
    setenv("INVOCATION_ID", "feedface", 1);
    sd::Fence fence(settings());
    auto deadline = core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3750));
    auto before = sd::boottimeUsec();
    fence.update(core::Role::Active, deadline, 9, "1", stopUnit("demo@1.service"));
    auto r = sd::readFenceFile(live());
    ASSERT_TRUE(r);
    // 3.75 s from now on CLOCK_BOOTTIME (ms rounding of the monotonic deadline, clock reads).
    EXPECT_GT(r->deadlineBoottimeUsec, before + 3740000);
    EXPECT_LT(r->deadlineBoottimeUsec, sd::boottimeUsec() + 3760000);
    EXPECT_EQ(r->token, 9);
    EXPECT_EQ(r->action, (sd::FenceAction{sd::FenceAction::Kind::StopUnit, {"demo@1.service"}}));
    EXPECT_EQ(r->env.at("PROM_FENCING_TOKEN"), "9");
    EXPECT_EQ(r->env.at("PROM_REPLICA_ID"), "1");
    EXPECT_EQ(r->env.at("PROM_APP"), "votingapp");
    EXPECT_EQ(r->env.at("PROM_FENCE"), "1");
    EXPECT_EQ(r->timeoutMs, 2000u);
    EXPECT_EQ(r->invocation, "feedface");
    unsetenv("INVOCATION_ID");
}

TEST_F(FenceOnDisk, EveryRenewedDeadlineIsWrittenAndAnUnchangedOneIsNot) {
    sd::Fence fence(settings());
    auto d = core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000));
    fence.update(core::Role::Promoting, d, 9, "1", shell("stop"));
    auto first = sd::readFenceFile(live())->deadlineBoottimeUsec;
    fs::remove(live());
    fence.update(core::Role::Promoting, d, 9, "1", shell("stop"));
    EXPECT_FALSE(fs::exists(live())) << "rewritten although nothing changed";
    fence.update(core::Role::Active, d + 1000ms, 9, "1", shell("stop"));
    ASSERT_TRUE(fs::exists(live()));
    EXPECT_EQ(sd::readFenceFile(live())->deadlineBoottimeUsec, first + 1000000);
}

TEST_F(FenceOnDisk, PassiveRemovesTheFileAndTheArmedCopy) {
    sd::Fence fence(settings());
    auto d = core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000));
    fence.update(core::Role::Active, d, 9, "1", shell("stop"));
    ASSERT_TRUE(sd::writeFenceFile(armed(), *sd::readFenceFile(live())));
    fence.update(core::Role::Demoting, d, 9, "1", shell("stop"));
    EXPECT_TRUE(fs::exists(live())) << "removed while ensure-passive may still be running";
    fence.update(core::Role::Passive, d, 9, "1", shell("stop"));
    EXPECT_FALSE(fs::exists(live()));
    EXPECT_FALSE(fs::exists(armed()));
    EXPECT_FALSE(fence.written());
}

TEST_F(FenceOnDisk, APassiveBeingStoppedWritesNoFence) {
    sd::Fence fence(settings());
    auto d = core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000));
    fence.update(core::Role::Passive, d, 9, "0", shell("stop"));
    fence.update(core::Role::Stopping, d, 9, "0", shell("stop"));
    EXPECT_FALSE(fs::exists(live()));
}

TEST_F(FenceOnDisk, AnActiveBeingStoppedKeepsItsFenceUntilItExits) {
    sd::Fence fence(settings());
    auto d = core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000));
    fence.update(core::Role::Active, d, 9, "1", shell("stop"));
    fence.update(core::Role::Stopping, d + 500ms, 9, "1", shell("stop"));
    ASSERT_TRUE(fs::exists(live()));
    EXPECT_EQ(sd::readFenceFile(live())->deadlineBoottimeUsec, fence.written()->deadlineBoottimeUsec);
}

TEST_F(FenceOnDisk, StartingLeavesThePreviousRunsFenceInPlace) {
    ASSERT_TRUE(sd::writeFenceFile(live(), sample()));
    ASSERT_TRUE(sd::writeFenceFile(armed(), sample()));
    sd::Fence fence(settings());
    fence.update(core::Role::Starting, core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000)), 0, "", shell("x"));
    EXPECT_EQ(sd::readFenceFile(live()), sample());
    EXPECT_TRUE(fs::exists(armed()));
}

TEST_F(FenceOnDisk, ResumedActiveCancelsTheCopyArmedWhilePromWasDown) {
    ASSERT_TRUE(sd::writeFenceFile(live(), sample()));
    ASSERT_TRUE(sd::writeFenceFile(armed(), sample()));
    sd::Fence fence(settings());
    fence.update(core::Role::Active, core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000)), 42, "1",
                 shell("stop"));
    EXPECT_FALSE(fs::exists(armed()));
    EXPECT_EQ(sd::readFenceFile(live())->token, 42);
}

TEST(FenceArmedPath, OnlyUnderSystemdSoThatAPromRunByHandNeverCancelsTheServicesFence) {
    unsetenv("INVOCATION_ID");
    EXPECT_EQ(sd::Fence::armedPathFor("0"), "");
    setenv("INVOCATION_ID", "0123", 1);
    EXPECT_EQ(sd::Fence::armedPathFor("0"), "/run/prom-fence/0");
    unsetenv("INVOCATION_ID");
}

TEST_F(FenceOnDisk, DemotingWithoutADeadlineKeepsTheLastOne) {
    sd::Fence fence(settings());
    fence.update(core::Role::Active, core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000)), 9, "1", shell("s"));
    auto before = sd::readFenceFile(live());
    fence.update(core::Role::Demoting, std::nullopt, 9, "1", shell("s"));
    EXPECT_EQ(sd::readFenceFile(live()), before);
}

TEST_F(FenceOnDisk, NoEnsurePassiveMeansNoFenceFile) {
    sd::Fence fence(settings());
    fence.update(core::Role::Active, core::TimePoint(core::Duration(sd::boottimeUsec() / 1000 + 3000)), 9, "1",
                 config::Action{});
    EXPECT_FALSE(fs::exists(live()));
}

// prom-fence, the program systemd runs: the paths that need no PID 1.

TEST_F(FenceOnDisk, ArmWithoutAFenceFileDoesNothing) {
    EXPECT_EQ(promFence({"arm", "1"}, {{"SERVICE_RESULT", "signal"}, {"EXIT_CODE", "killed"}, {"EXIT_STATUS", "KILL"}}), 0);
    EXPECT_FALSE(fs::exists(m_dir + "/demoted"));
    EXPECT_FALSE(fs::exists(armed()));
}

TEST_F(FenceOnDisk, ArmAfterTheDeadlineDemotesAtOnceWithTheSavedEnvironment) {
    ASSERT_TRUE(sd::writeFenceFile(live(), scriptFence(-100000)));
    EXPECT_EQ(promFence({"arm", "1"}, {{"SERVICE_RESULT", "watchdog"}, {"EXIT_CODE", "killed"}, {"EXIT_STATUS", "KILL"}}), 0)
        << slurp(m_dir + "/stderr");
    EXPECT_EQ(slurp(m_dir + "/demoted"), "demoting 7 1\n");
    EXPECT_FALSE(fs::exists(armed()));
    EXPECT_FALSE(fs::exists(live()));
}

TEST_F(FenceOnDisk, ArmAfterACleanExitOfTheRunThatWroteTheFenceForgetsIt) {
    auto r = scriptFence(-100000);
    r.invocation = "aaaa";
    ASSERT_TRUE(sd::writeFenceFile(live(), r));
    EXPECT_EQ(promFence({"arm", "1"}, {{"SERVICE_RESULT", "success"}, {"EXIT_CODE", "exited"}, {"EXIT_STATUS", "0"},
                                       {"INVOCATION_ID", "aaaa"}}),
              0);
    EXPECT_FALSE(fs::exists(m_dir + "/demoted"));
    EXPECT_FALSE(fs::exists(live()));
}

TEST_F(FenceOnDisk, ArmAfterACleanExitOfALaterRunStillDemotes) {
    // prom crashed while active (invocation aaaa); its restart (bbbb) was stopped before it
    // settled, so it never ran ensure-passive: the replica may still be active.
    auto r = scriptFence(-100000);
    r.invocation = "aaaa";
    ASSERT_TRUE(sd::writeFenceFile(live(), r));
    EXPECT_EQ(promFence({"arm", "1"}, {{"SERVICE_RESULT", "success"}, {"EXIT_CODE", "exited"}, {"EXIT_STATUS", "0"},
                                       {"INVOCATION_ID", "bbbb"}}),
              0)
        << slurp(m_dir + "/stderr");
    EXPECT_EQ(slurp(m_dir + "/demoted"), "demoting 7 1\n");
}

TEST_F(FenceOnDisk, ArmRefusesAGarbledFenceFile) {
    std::ofstream(live()) << "prom-fence 1\nreplica 1\n";
    EXPECT_EQ(promFence({"arm", "1"}, {{"SERVICE_RESULT", "signal"}}), 65);
}

TEST_F(FenceOnDisk, DemoteRunsTheArmedActionAndSpendsIt) {
    auto r = scriptFence(-1000);
    ASSERT_TRUE(sd::writeFenceFile(armed(), r));
    ASSERT_TRUE(sd::writeFenceFile(live(), r));
    EXPECT_EQ(promFence({"demote", "1"}), 0) << slurp(m_dir + "/stderr");
    EXPECT_EQ(slurp(m_dir + "/demoted"), "demoting 7 1\n");
    EXPECT_FALSE(fs::exists(armed()));
    EXPECT_FALSE(fs::exists(live()));
    // The timer and OnFailure= may both fire: the second run finds nothing armed.
    EXPECT_EQ(promFence({"demote", "1"}), 0);
    EXPECT_EQ(slurp(m_dir + "/demoted"), "demoting 7 1\n");
}

TEST_F(FenceOnDisk, DemoteDoesNothingWhenPromRenewedTheFenceSinceItWasArmed) {
    ASSERT_TRUE(sd::writeFenceFile(armed(), scriptFence(-1000)));
    ASSERT_TRUE(sd::writeFenceFile(live(), scriptFence(3000000)));
    EXPECT_EQ(promFence({"demote", "1"}), 0);
    EXPECT_FALSE(fs::exists(m_dir + "/demoted"));
    EXPECT_FALSE(fs::exists(armed()));
    EXPECT_TRUE(fs::exists(live()));
}

TEST_F(FenceOnDisk, DemoteRetriesAFailingActionAndReportsFailure) {
    auto r = scriptFence(-1000);
    r.action.args[0] = "echo try >> " + m_dir + "/demoted; exit 1";
    ASSERT_TRUE(sd::writeFenceFile(armed(), r));
    EXPECT_EQ(promFence({"demote", "1"}), 1);
    EXPECT_EQ(slurp(m_dir + "/demoted"), "try\ntry\ntry\n");
    EXPECT_TRUE(fs::exists(armed())) << "a failed demotion must stay armed for OnFailure= or a rerun";
}

TEST_F(FenceOnDisk, DemoteKillsAnActionAtItsTimeout) {
    auto r = scriptFence(-1000);
    r.action.args[0] = "sleep 30";
    r.timeoutMs = 100;
    ASSERT_TRUE(sd::writeFenceFile(armed(), r));
    auto t0 = sd::monotonicUsec();
    EXPECT_EQ(promFence({"demote", "1"}), 1);
    EXPECT_LT(sd::monotonicUsec() - t0, 3000000u);
}

TEST(FenceWatchdog, FitsHalfOfTtlMinusMarginWithinTheUnitsBound) {
    // TTL 5 s, margin 1.25 s: 1.875 s, under the unit's 2 s.
    EXPECT_EQ(sd::Notifier::watchdogUsecFor(5000ms, 1250ms, 2000000), 1875000u);
    // TTL 2 s, margin 0.75 s: 625 ms.
    EXPECT_EQ(sd::Notifier::watchdogUsecFor(2000ms, 750ms, 2000000), 625000u);
    // A long lease never lengthens the unit's watchdog.
    EXPECT_EQ(sd::Notifier::watchdogUsecFor(30000ms, 1250ms, 2000000), 2000000u);
    // Never below 200 ms, however tight the margin.
    EXPECT_EQ(sd::Notifier::watchdogUsecFor(1000ms, 950ms, 2000000), 200000u);
    // No watchdog in the unit: none at all.
    EXPECT_EQ(sd::Notifier::watchdogUsecFor(5000ms, 1250ms, 0), 0u);
}

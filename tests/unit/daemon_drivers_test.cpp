// The daemon's drivers between the election core and the outside world, with fakes: every
// reply names the request it answers, store health follows the answers, actions get their
// environment, and status goes out in the order clients rely on.
#include <gtest/gtest.h>

#include "daemon/action_driver.hpp"
#include "daemon/status_publisher.hpp"
#include "common/text.hpp"
#include "daemon/store_driver.hpp"

using namespace prom;
using namespace std::chrono_literals;

namespace {

/** A store whose answers the test gives by hand. */
class FakeStore : public store::Store {
public:
    void grantLease(Duration, std::function<void(Result<store::Lease>)> done) override { grant = std::move(done); }
    void keepAlive(std::int64_t, std::function<void(Result<std::optional<Duration>>)> done) override { keep = std::move(done); }
    void revokeLease(std::int64_t, std::function<void(Result<Ok>)>) override {}
    void readLeader(std::function<void(Result<core::LeaderRead>)> done) override { read = std::move(done); }
    void campaign(std::int64_t, bool, std::function<void(Result<core::CampaignResult>)> done) override { camp = std::move(done); }
    void deleteLeader(std::int64_t, std::function<void(Result<Ok>)> done) override { del = std::move(done); }
    void watchLeader(std::int64_t, std::function<void(const core::WatchEvent&)> onEvent,
                     std::function<void(const std::string&)> onBroken) override {
        watchEvent = std::move(onEvent);
        watchBroken = std::move(onBroken);
    }
    void cancelWatch() override {}
    void markHandover(std::int64_t, std::int64_t, const std::string&, std::function<void(Result<Ok>)> done) override {
        mark = std::move(done);
    }
    void putMember(std::int64_t lease, const store::MemberInfo& info, std::function<void(Result<Ok>)> done) override {
        puts.push_back({lease, info});
        put = std::move(done);
    }
    void readMembers(std::function<void(Result<std::vector<store::MemberInfo>>)> done) override { members = std::move(done); }
    std::uint64_t requestCount() const override { return 0; }

    std::function<void(Result<store::Lease>)> grant;
    std::function<void(Result<std::optional<Duration>>)> keep;
    std::function<void(Result<core::LeaderRead>)> read;
    std::function<void(Result<core::CampaignResult>)> camp;
    std::function<void(Result<Ok>)> del, mark;
    std::function<void(const core::WatchEvent&)> watchEvent;
    std::function<void(const std::string&)> watchBroken;
    std::function<void(Result<std::vector<store::MemberInfo>>)> members;
    std::vector<std::pair<std::int64_t, store::MemberInfo>> puts;
    std::function<void(Result<Ok>)> put;
};

struct StoreFixture {
    FakeStore store;
    std::vector<core::Event> fed;
    std::vector<std::pair<bool, std::string>> health;
    TimePoint clock{Duration(5000)};
    daemon::StoreDriver driver{store, "MUSIC", [this](core::Event e) { fed.push_back(std::move(e)); },
                               [this] { return clock; },
                               [this](bool ok, const std::string& err) { health.emplace_back(ok, err); }};
};

}  // namespace

TEST(StoreDriver, EveryReplyNamesTheRequestItAnswers) {
    StoreFixture f;
    ASSERT_TRUE(f.driver.apply(core::ReadLeader{41}));
    f.store.read(core::LeaderRead{{}, 7});
    ASSERT_TRUE(f.driver.apply(core::Watch{8, 42}));
    f.store.watchEvent(core::WatchEvent{{}, 9});
    f.store.watchBroken("cancelled");
    ASSERT_EQ(f.fed.size(), 3u);
    EXPECT_EQ(std::get<core::LeaderRead>(f.fed[0]).req, 41u);
    EXPECT_EQ(std::get<core::WatchEvent>(f.fed[1]).req, 42u);
    EXPECT_EQ(std::get<core::WatchBroken>(f.fed[2]).req, 42u);
}

TEST(StoreDriver, AKeepaliveCarriesItsSendTimeAndALostLeaseNamesTheBackend) {
    StoreFixture f;
    f.driver.apply(core::KeepAlive{100, 3});
    f.clock += 400ms;  // the answer comes later; the ack proves the lease from the send time
    f.store.keep(std::optional<Duration>(5000ms));
    auto& ack = std::get<core::KeepaliveAcked>(f.fed.at(0));
    EXPECT_EQ(ack.sentAt, TimePoint(Duration(5000)));
    EXPECT_EQ(ack.req, 3u);
    f.driver.apply(core::KeepAlive{100, 4});
    f.store.keep(std::optional<Duration>());
    EXPECT_EQ(std::get<core::LeaseLost>(f.fed.at(1)).req, 4u);
}

TEST(StoreDriver, AFailureMakesTheStoreUnhealthyWithItsReasonAndRecoveryClearsIt) {
    StoreFixture f;
    f.driver.apply(core::Campaign{100, 9});
    f.store.camp(Error{"connection refused"});
    auto& failed = std::get<core::StoreRequestFailed>(f.fed.at(0));
    EXPECT_EQ(failed.what, core::StoreRequestFailed::What::Campaign);
    EXPECT_EQ(failed.req, 9u);
    EXPECT_FALSE(f.driver.healthy());
    EXPECT_EQ(f.driver.lastError(), "connection refused");
    f.driver.apply(core::ReadLeader{10});
    f.store.read(core::LeaderRead{{}, 7});
    EXPECT_TRUE(f.driver.healthy());
    EXPECT_EQ(f.driver.lastError(), "");
    ASSERT_EQ(f.health.size(), 2u);
    EXPECT_EQ(f.health[1], std::make_pair(true, std::string()));
}

TEST(StoreDriver, LeavesOtherEffectsAlone) {
    StoreFixture f;
    EXPECT_FALSE(f.driver.apply(core::CancelAction{}));
    EXPECT_FALSE(f.driver.apply(core::PublishError{"x"}));
}

namespace {

class FakeRunner : public actions::ActionRunner {
public:
    void run(const std::string& name, const config::Action&, const std::map<std::string, std::string>& e,
             std::chrono::milliseconds, Done d) override {
        ran = name;
        env = e;
        done = std::move(d);
    }
    void cancel() override { ++cancels; }
    bool busy() const override { return static_cast<bool>(done); }
    std::string ran;
    std::map<std::string, std::string> env;
    Done done;
    int cancels = 0;
};

config::Config twoReplicas() {
    config::Config c;
    c.appName = "votingapp";
    c.replicas = {"0", "1"};
    config::Action a;
    a.kind = config::Action::Kind::Shell;
    a.command = "true";
    for (const auto& id : c.replicas) c.replica[id] = config::ReplicaSettings{a, a, a, 0};
    return c;
}

}  // namespace

TEST(ActionDriver, RunsTheActionWithItsEnvironmentAndReportsTheRun) {
    FakeRunner runner;
    auto config = twoReplicas();
    std::vector<core::Event> fed;
    daemon::ActionDriver d(runner, config, "0", [&](core::Event e) { fed.push_back(std::move(e)); }, nullptr);
    ASSERT_TRUE(d.apply(core::RunAction{core::ActionKind::EnsureActive, core::Role::Promoting, "0", 17, "", 55}));
    EXPECT_EQ(runner.ran, "ensure-active");
    EXPECT_EQ(runner.env["PROM_FENCING_TOKEN"], "17");
    EXPECT_EQ(runner.env["PROM_ROLE"], "promoting");
    EXPECT_EQ(runner.env["PROM_APP"], "votingapp");
    runner.done(core::ActionOutcome::Switched, "exit 2");
    auto& f = std::get<core::ActionFinished>(fed.at(0));
    EXPECT_EQ(f.req, 55u);
    EXPECT_EQ(f.kind, core::ActionKind::EnsureActive);
    EXPECT_TRUE(d.apply(core::CancelAction{}));
    EXPECT_EQ(runner.cancels, 1);
}

TEST(ActionDriver, ExtendsSystemdsTimeoutForActionsAtStartAndStop) {
    FakeRunner runner;
    auto config = twoReplicas();
    unsigned long long extended = 0;
    daemon::ActionDriver d(runner, config, "0", [](core::Event) {}, [&](unsigned long long usec) { extended = usec; });
    d.apply(core::RunAction{core::ActionKind::EnsurePassive, core::Role::Starting, "", 0, "", 1});
    EXPECT_EQ(extended, static_cast<unsigned long long>(config.actions.timeout.count() + 5000) * 1000);
}

TEST(StatusPublisher, PropertiesChangeBeforeTheSignalAndReadyOnce) {
    std::vector<std::string> calls;
    daemon::StatusSinks sinks;
    sinks.properties = [&](const daemon::Status& s) { calls.push_back("props " + s.role); };
    sinks.roleChanged = [&](const std::string& o, const std::string& n, std::uint64_t t) {
        calls.push_back("signal " + o + "->" + n + " " + std::to_string(t));
    };
    sinks.notify = [&](const std::string& l) { calls.push_back(l); };
    sinks.realtimeUsec = [] { return std::uint64_t{123}; };
    daemon::StatusPublisher p(sinks);
    p.apply(core::PublishRole{core::Role::Passive, "1", 4, "ensure-passive finished"});
    p.apply(core::PublishRole{core::Role::Promoting, "0", 5, "won"});
    p.apply(core::PublishRole{core::Role::Active, "0", 5, "ok"});
    std::vector<std::string> want{"props passive", "signal starting->passive 4", "STATUS=passive, leader 1, token 4", "READY=1",
                                  "props promoting", "signal passive->promoting 5", "STATUS=promoting, leader 0, token 5",
                                  "props active", "signal promoting->active 5", "STATUS=active, leader 0, token 5"};
    EXPECT_EQ(calls, want);
    EXPECT_EQ(p.status().lastTransitionUSec, 123u);
}

TEST(StatusPublisher, StoreRecoveryClearsOnlyTheStoresError) {
    daemon::StatusPublisher p(daemon::StatusSinks{});
    p.storeHealth(false, "etcd: connection refused");
    EXPECT_EQ(p.status().lastError, "etcd: connection refused");
    p.storeHealth(true, "");
    EXPECT_EQ(p.status().lastError, "");
    p.apply(core::PublishError{"ensure-active failed (1/3): exit 1"});
    p.storeHealth(true, "");
    EXPECT_EQ(p.status().lastError, "ensure-active failed (1/3): exit 1");
}

// LastErrorUSec says since when the error has stood: a repetition of the same text keeps the
// first time, a new text gets its own, recovery clears both. A store outage is one error
// however its failures are worded (see StoreOutageKeepsItsStartWhileTheFailingRequestsTakeTurns).
TEST(StatusPublisher, LastErrorTimeIsTheFirstOccurrenceOfItsTextAndZeroWhenCleared) {
    std::uint64_t now = 1000;
    std::vector<daemon::Status> pushed;
    daemon::StatusSinks sinks;
    sinks.properties = [&](const daemon::Status& s) { pushed.push_back(s); };
    sinks.realtimeUsec = [&] { return now; };
    daemon::StatusPublisher p(sinks);
    EXPECT_EQ(p.status().lastErrorUSec, 0u);

    p.storeHealth(false, "etcd: connection refused");
    EXPECT_EQ(p.status().lastErrorUSec, 1000u);
    now = 2000;
    p.storeHealth(false, "etcd: connection refused");
    EXPECT_EQ(p.status().lastErrorUSec, 1000u) << "a repeated error keeps the time it began";
    ASSERT_FALSE(pushed.empty());
    EXPECT_EQ(pushed.back().lastErrorUSec, 1000u) << "the time reaches the D-Bus properties";
    now = 4000;
    p.storeHealth(true, "");
    EXPECT_EQ(p.status().lastError, "");
    EXPECT_EQ(p.status().lastErrorUSec, 0u);
    EXPECT_EQ(pushed.back().lastErrorUSec, 0u);

    // The same for errors from the core (actions), which recovery of the store does not clear.
    now = 5000;
    p.apply(core::PublishError{"ensure-active failed (1/3): exit 1"});
    EXPECT_EQ(p.status().lastErrorUSec, 5000u);
    now = 6000;
    p.apply(core::PublishError{"ensure-active failed (1/3): exit 1"});
    EXPECT_EQ(p.status().lastErrorUSec, 5000u);
    p.storeHealth(true, "");
    EXPECT_EQ(p.status().lastErrorUSec, 5000u);
    now = 7000;
    p.apply(core::PublishError{"ensure-active failed (2/3): exit 1"});
    EXPECT_EQ(p.status().lastErrorUSec, 7000u);
    // A store error after an action error is a new error, then its recovery clears it.
    now = 8000;
    p.storeHealth(false, "etcd: connection refused");
    EXPECT_EQ(p.status().lastErrorUSec, 8000u);
    p.storeHealth(true, "");
    EXPECT_EQ(p.status().lastErrorUSec, 0u);
}

// With etcd down the failing requests take turns ("etcd kv/range failed ...", "etcd
// lease/keepalive failed ...", seen twice a second in tests/dbus/test_dbus_api.py): LastError
// shows the latest, LastErrorUSec stays at the start of the outage. An action's error in between
// is a new error, and so is the next outage.
TEST(StatusPublisher, StoreOutageKeepsItsStartWhileTheFailingRequestsTakeTurns) {
    std::uint64_t now = 1000;
    daemon::StatusSinks sinks;
    sinks.realtimeUsec = [&] { return now; };
    daemon::StatusPublisher p(sinks);
    p.storeHealth(true, "");
    p.storeHealth(false, "etcd kv/range failed on every endpoint: refused");
    EXPECT_EQ(p.status().lastErrorUSec, 1000u);
    now = 1500;
    p.storeHealth(false, "etcd lease/keepalive failed on every endpoint: refused");
    EXPECT_EQ(p.status().lastError, "etcd lease/keepalive failed on every endpoint: refused");
    EXPECT_EQ(p.status().lastErrorUSec, 1000u);
    now = 2000;
    p.storeHealth(false, "etcd kv/range failed on every endpoint: refused");
    EXPECT_EQ(p.status().lastErrorUSec, 1000u);

    now = 3000;
    p.apply(core::PublishError{"ensure-passive failed (1/3): exit 1"});
    EXPECT_EQ(p.status().lastErrorUSec, 3000u);
    now = 3500;
    p.storeHealth(false, "etcd lease/keepalive failed on every endpoint: refused");
    EXPECT_EQ(p.status().lastErrorUSec, 3500u) << "the store's error replaces the action's: a new error";

    p.storeHealth(true, "");
    EXPECT_EQ(p.status().lastErrorUSec, 0u);
    now = 9000;
    p.storeHealth(false, "etcd kv/range failed on every endpoint: refused");
    EXPECT_EQ(p.status().lastErrorUSec, 9000u) << "a new outage";
}

TEST(StoreDriver, AnOutageIsLoggedOnceThenSummarisedNotLineByLine) {
    StoreFixture f;
    testing::internal::CaptureStderr();
    for (int i = 0; i < 44; ++i) {  // 4 failures a second for 11 s
        f.driver.apply(core::ReadLeader{static_cast<core::RequestId>(i + 1)});
        f.store.read(Error{"connection refused"});
        f.clock += 250ms;
    }
    f.driver.apply(core::ReadLeader{99});
    f.store.read(core::LeaderRead{{}, 7});
    std::string out = testing::internal::GetCapturedStderr();
    auto count = [&](const std::string& needle) {
        std::size_t n = 0;
        for (auto p = out.find(needle); p != std::string::npos; p = out.find(needle, p + 1)) ++n;
        return n;
    };
    EXPECT_EQ(count("reading the leader key failed"), 2u) << out;  // the first, one summary
    EXPECT_EQ(count("more store failures"), 1u) << out;
    EXPECT_EQ(count("answers again after 11000 ms and 44 failed requests"), 1u) << out;
}

TEST(StatusPublisher, OnlyValidUtf8WithoutControlsReachesTheProperties) {
    daemon::StatusPublisher p(daemon::StatusSinks{});
    p.storeHealth(false, std::string("bad \xc3 byte \x1b[31m red"));
    EXPECT_TRUE(text::isValidUtf8(p.status().lastError));
    EXPECT_EQ(p.status().lastError.find('\x1b'), std::string::npos);
}

TEST(StoreDriver, TheMemberKeyIsRewrittenWhenWhatItSaysChangesAndRetriedAfterAFailure) {
    StoreFixture f;
    store::MemberInfo info;
    info.id = "0";
    info.role = "passive";
    f.driver.describeMember([&] { return info; });
    f.driver.memberChanged();
    EXPECT_TRUE(f.store.puts.empty()) << "no lease yet: nothing to put the key on";
    f.driver.apply(core::PutMember{100});
    ASSERT_EQ(f.store.puts.size(), 1u);
    EXPECT_EQ(f.store.puts[0].first, 100);
    f.store.put(Ok{});
    f.driver.memberChanged();
    EXPECT_EQ(f.store.puts.size(), 1u) << "unchanged: no write";
    info.role = "active";
    f.driver.memberChanged();
    ASSERT_EQ(f.store.puts.size(), 2u);
    info.role = "demoting";
    f.driver.memberChanged();
    EXPECT_EQ(f.store.puts.size(), 2u) << "one write in flight at a time";
    f.store.put(Error{"etcd down"});
    EXPECT_EQ(f.store.puts.size(), 2u) << "a failed write is retried after a pause, not at once";
    f.clock += Duration(1001);
    f.driver.memberChanged();
    ASSERT_EQ(f.store.puts.size(), 3u);
    EXPECT_EQ(f.store.puts[2].second.role, "demoting");
}

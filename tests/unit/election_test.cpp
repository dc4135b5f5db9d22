// The election core under a fake monotonic clock: every safety rule of DESIGN.md §3.
#include <gtest/gtest.h>

#include "core/election.hpp"
#include "election_sim.hpp"

using namespace prom::core;
using namespace std::chrono_literals;

using namespace election_test;

TEST(CleanStart, PassiveFirstThenActiveOnceEnsureActiveSucceeds) {
    Sim s;
    s.feed(Start{});
    EXPECT_NE(s.last<GrantLease>(), nullptr);
    EXPECT_NE(s.last<ReadLeader>(), nullptr);
    EXPECT_EQ(s.e().role(), Role::Starting);
    s.toActive(5);
    EXPECT_EQ(s.e().token(), 5);
    EXPECT_TRUE(s.e().holdsLeadership());
}

TEST(CleanStart, WatchesFromTheRevisionAfterTheRead) {
    Sim s;
    s.feed(Start{});
    s.feed(LeaseGranted{kLease, 5000ms, s.now});
    s.feed(LeaderRead{other(3), 41});
    ASSERT_NE(s.last<Watch>(), nullptr);
    EXPECT_EQ(s.last<Watch>()->fromRevision, 42);
}

TEST(PassiveReplica, DoesNotCampaignWhileALeaderExists) {
    Sim s;
    s.mark();
    s.toPassive(other(3));
    s.runFor(10s);
    EXPECT_EQ(s.countSinceMark<Campaign>(), 0);
    EXPECT_EQ(s.e().leader(), "1");
    EXPECT_EQ(s.e().token(), 3);
}

TEST(PassiveReplica, CampaignsTheMomentTheLeaderKeyIsDeleted) {
    Sim s;
    s.toPassive(other(3));
    s.feed(WatchEvent{{}, 10});
    ASSERT_NE(s.last<Campaign>(), nullptr);
    EXPECT_EQ(s.last<Campaign>()->lease, kLease);
}

TEST(PassiveReplica, LevelTriggeredEnsurePassiveEveryMonitorInterval) {
    Sim s;
    s.toPassive(other(3));
    s.mark();
    s.ackKeepalives(5500ms);
    EXPECT_TRUE(s.ranSinceMark(ActionKind::EnsurePassive));
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsureActive));
}

TEST(Priority, LowerPriorityWaitsItsDelayBeforeCampaigning) {
    auto p = Sim::defaults();
    p.campaignDelay = 2 * kPriorityStep;
    Sim s(p);
    s.toPassive(other(3));
    s.feed(WatchEvent{{}, 10});
    EXPECT_EQ(s.last<Campaign>(), nullptr);
    ASSERT_TRUE(s.e().nextWakeup());
    EXPECT_EQ(*s.e().nextWakeup(), s.now + 600ms);
    s.now += 600ms;
    s.feed(Tick{});
    EXPECT_NE(s.last<Campaign>(), nullptr);
}

TEST(Priority, LowerPriorityStandsDownWhenAHigherOneWinsDuringTheDelay) {
    auto p = Sim::defaults();
    p.campaignDelay = kPriorityStep;
    Sim s(p);
    s.toPassive(other(3));
    s.feed(WatchEvent{{}, 10});
    s.now += 20ms;
    s.mark();
    s.feed(WatchEvent{other(11, "2"), 11});  // the higher-priority replica won
    s.runFor(2s);
    EXPECT_EQ(s.countSinceMark<Campaign>(), 0);
    EXPECT_EQ(s.e().leader(), "2");
}

TEST(ActiveReplica, DemotesAtItsLocalDeadlineWithNoContactToTheStore) {
    Sim s;
    s.toActive();
    TimePoint lastAck = s.now;  // the campaign's lease grant was the last acknowledged send
    auto deadline = s.e().deadline();
    ASSERT_TRUE(deadline);
    EXPECT_EQ(*deadline, lastAck + 5000ms - 1250ms);
    // Keepalives go out, but no reply ever comes.
    s.storeSilent(*deadline - 1ms - s.now);
    EXPECT_EQ(s.e().role(), Role::Active);
    s.mark();
    s.storeSilent(1ms);
    EXPECT_NE(s.e().role(), Role::Active);
    ASSERT_NE(s.findSinceMark<PublishRole>(), nullptr);
    EXPECT_EQ(s.findSinceMark<PublishRole>()->role, Role::Demoting);
    EXPECT_TRUE(s.ranSinceMark(ActionKind::EnsurePassive));
    EXPECT_NE(s.findSinceMark<RevokeLease>(), nullptr);
    EXPECT_FALSE(s.e().holdsLeadership());
}

TEST(ActiveReplica, DemotesBeforeTheServerSideLeaseCanExpire) {
    Sim s;
    s.toActive();
    s.ackKeepalives(20s);
    EXPECT_EQ(s.e().role(), Role::Active);
    // etcd counts the TTL from when it received the last keepalive, after we sent it.
    TimePoint deadline = *s.e().deadline();
    TimePoint lastSend = deadline - 5000ms + 1250ms;
    TimePoint earliestServerExpiry = lastSend + 5000ms;
    EXPECT_LT(deadline, earliestServerExpiry);
    s.storeSilent(earliestServerExpiry - s.now - 1ms);
    EXPECT_NE(s.e().role(), Role::Active);
    EXPECT_FALSE(s.e().holdsLeadership());
}

TEST(ActiveReplica, KeepaliveReplyDelayedPastTheDeadlineDoesNotExtendLeadership) {
    Sim s;
    s.toActive();
    s.runUntil(s.now + 1700ms);  // first keepalive goes out
    ASSERT_NE(s.findSinceMark<KeepAlive>(), nullptr);
    TimePoint sent = s.now;
    // The reply arrives 4 s later, after the deadline computed from its send time.
    s.now = sent + 4000ms;
    s.feed(KeepaliveAcked{kLease, 5000ms, sent});
    EXPECT_NE(s.e().role(), Role::Active);
}

TEST(ActiveReplica, StoreSilentForLongerThanTtlDemotesTheActiveOnly) {
    Sim active, passive;
    active.toActive();
    passive.toPassive();
    passive.feed(CampaignResult{false, other(5, "0"), 5});
    passive.mark();
    active.runFor(6s);
    passive.runFor(6s);
    EXPECT_EQ(active.e().role(), Role::Demoting);
    EXPECT_EQ(passive.e().role(), Role::Passive);
    EXPECT_EQ(passive.countSinceMark<Campaign>(), 0);
}

TEST(ActiveReplica, DemotesWhenItsLeaderKeyIsDeleted) {
    Sim s;
    s.toActive(5);
    s.feed(WatchEvent{{}, 12});
    EXPECT_EQ(s.e().role(), Role::Demoting);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    EXPECT_EQ(s.e().role(), Role::Passive);
}

TEST(ActiveReplica, DemotesWhenTheStoreSaysItsLeaseIsGone) {
    Sim s;
    s.toActive();
    s.runFor(1700ms);  // the next keepalive goes out; etcd answers it without a TTL
    ASSERT_NE(s.last<KeepAlive>(), nullptr);
    s.feed(LeaseLost{kLease});
    EXPECT_EQ(s.e().role(), Role::Demoting);
    EXPECT_NE(s.last<GrantLease>(), nullptr);
}

TEST(ActiveReplica, ACampaignWinArrivingAfterTheLeaseDeadlineNeverRunsEnsureActive) {
    Sim s;
    s.toPassive();
    s.mark();
    s.now += 4000ms;  // the txn reply took longer than TTL - margin
    s.feed(CampaignResult{true, {true, "0", kLease, 7, {}}, 7});
    s.runFor(1s);
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsureActive));
    EXPECT_FALSE(s.e().holdsLeadership());
}

TEST(ActiveReplica, ReRunsEnsureActiveEveryMonitorInterval) {
    Sim s;
    s.toActive();
    s.mark();
    s.ackKeepalives(3500ms);
    EXPECT_TRUE(s.ranSinceMark(ActionKind::EnsureActive));
    EXPECT_EQ(s.e().role(), Role::Active);
}

TEST(FailingReplica, ResignsAfterRetryAttemptsSoAHealthyReplicaTakesOver) {
    Sim s;
    s.toActive(5);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(s.nextAction().kind, ActionKind::EnsureActive);
        s.feed(ActionFinished{ActionKind::EnsureActive, i == 1 ? ActionOutcome::TimedOut : ActionOutcome::Failed, "exit 1"});
    }
    EXPECT_EQ(s.e().role(), Role::Demoting);
    ASSERT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
    EXPECT_EQ(s.last<DeleteLeader>(), nullptr);  // not before ensure-passive finished
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    ASSERT_NE(s.last<DeleteLeader>(), nullptr);
    EXPECT_EQ(s.last<DeleteLeader>()->createRevision, 5);
    s.feed(WatchEvent{{}, 20});
    s.feed(ResignDone{});
    EXPECT_EQ(s.e().role(), Role::Passive);
    // Stays out of the next campaign so that another replica takes over...
    s.mark();
    s.ackKeepalives(4s);
    EXPECT_EQ(s.countSinceMark<Campaign>(), 0);
    // ...but campaigns again if nobody did within the cooldown.
    s.ackKeepalives(2s);
    EXPECT_GE(s.countSinceMark<Campaign>(), 1);
}

TEST(FailingReplica, RecoversItsFailureCountAfterOneSuccess) {
    Sim s;
    s.toActive();
    for (int i = 0; i < 5; ++i) {
        auto r = s.nextAction();
        s.feed(ActionFinished{r.kind, i % 2 ? ActionOutcome::AlreadyInMode : ActionOutcome::Failed, ""});
    }
    EXPECT_EQ(s.e().role(), Role::Active);
}

TEST(Actions, NeverOverlap_ADemotionCancelsTheRunningEnsureActiveFirst) {
    Sim s;
    s.toActive();
    ASSERT_EQ(s.nextAction().kind, ActionKind::EnsureActive);  // a slow re-run
    s.feed(WatchEvent{{}, 30});
    EXPECT_NE(s.last<CancelAction>(), nullptr);
    EXPECT_EQ(s.last<RunAction>(), nullptr);  // ensure-passive waits for the cancelled run
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Cancelled, ""});
    ASSERT_NE(s.last<RunAction>(), nullptr);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
}

TEST(Actions, ATimedOutEnsurePassiveIsRetriedBeforeHandingOver) {
    Sim s;
    s.toActive(5);
    s.feed(ResignRequest{});
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::TimedOut, "killed"});
    EXPECT_EQ(s.last<DeleteLeader>(), nullptr);
    s.runFor(200ms);
    ASSERT_NE(s.last<RunAction>(), nullptr);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::AlreadyInMode, ""});
    EXPECT_NE(s.last<DeleteLeader>(), nullptr);
}

TEST(Restart, ResumesAsActiveWithoutEnsurePassiveWhenLeaseAndKeyLive) {
    Sim s;
    s.mark();
    s.feed(Start{kLease, s.now + 3750ms});  // the previous run was active, its deadline ahead
    ASSERT_NE(s.last<KeepAlive>(), nullptr);
    EXPECT_EQ(s.last<GrantLease>(), nullptr);
    s.feed(LeaderRead{{true, "0", kLease, 17, {}}, 30});  // arrives before the keepalive reply
    EXPECT_EQ(s.e().role(), Role::Starting);
    s.feed(KeepaliveAcked{kLease, 5000ms, s.now});
    EXPECT_EQ(s.e().role(), Role::Active);
    EXPECT_EQ(s.e().token(), 17);
    s.runFor(100ms);
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsurePassive));
    EXPECT_TRUE(s.ranSinceMark(ActionKind::EnsureActive));  // level-triggered check, exit 0 expected
}

TEST(Restart, StartsPassiveWhenThePersistedLeaseExpired) {
    Sim s;
    s.feed(Start{kLease, s.now + 3750ms});
    s.mark();
    s.feed(LeaseLost{kLease});
    EXPECT_NE(s.last<GrantLease>(), nullptr);
    EXPECT_TRUE(s.ranSinceMark(ActionKind::EnsurePassive));
}

TEST(Restart, StartsPassiveWhenTheStoreDoesNotAnswerInTime) {
    Sim s;
    s.feed(Start{kLease, s.now + 10s});
    s.runFor(3749ms);
    EXPECT_EQ(s.e().role(), Role::Starting);
    s.runFor(1ms);
    ASSERT_NE(s.last<RunAction>(), nullptr);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
}

TEST(EtcdLeaderChange, TtlResetToFullDoesNotCauseASpuriousRoleChange) {
    Sim s;
    s.toActive();
    s.mark();
    // A new etcd leader resets every lease to its full TTL; replies keep coming, some slower.
    s.ackKeepalives(60s);
    EXPECT_EQ(s.e().role(), Role::Active);
    EXPECT_EQ(s.countSinceMark<PublishRole>(), 0);
}

TEST(FencingToken, NeverGoesBackwardsWhenAStaleMemberAnswers) {
    Sim s;
    s.toPassive(other(10));
    s.feed(WatchEvent{{}, 11});
    s.feed(CampaignResult{false, other(8, "2"), 9});
    EXPECT_EQ(s.e().token(), 10);
}

TEST(StartPassive, WaitsForALiveActiveBeforeCampaigning) {
    auto p = Sim::defaults();
    p.startPassive = true;
    Sim s(p);
    s.mark();
    s.toPassive();
    s.ackKeepalives(3s);
    EXPECT_EQ(s.countSinceMark<Campaign>(), 0);
    s.feed(WatchEvent{other(4), 4});
    s.feed(WatchEvent{{}, 5});
    EXPECT_NE(s.last<Campaign>(), nullptr);
}

TEST(Stop, WhileActiveRunsEnsurePassiveDeletesTheKeyThenExits) {
    Sim s;
    s.toActive(5);
    s.feed(StopRequest{});
    EXPECT_EQ(s.e().role(), Role::Stopping);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
    EXPECT_EQ(s.last<Exit>(), nullptr);
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    ASSERT_NE(s.last<DeleteLeader>(), nullptr);
    s.feed(ResignDone{});
    EXPECT_NE(s.last<RevokeLease>(), nullptr);
    EXPECT_NE(s.last<Exit>(), nullptr);
}

TEST(Stop, WhilePassiveExitsAtOnceAndRevokesItsLease) {
    Sim s;
    s.toPassive(other(3));
    s.feed(StopRequest{});
    EXPECT_NE(s.last<RevokeLease>(), nullptr);
    EXPECT_NE(s.last<Exit>(), nullptr);
    EXPECT_EQ(s.last<RunAction>(), nullptr);
}

TEST(Stop, WhileActiveWithTheStoreDownExitsAtTheDeadline) {
    Sim s;
    s.toActive(5);
    s.feed(StopRequest{});
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    s.mark();
    s.feed(StoreRequestFailed{StoreRequestFailed::What::Resign, "down"});
    s.storeSilent(5s);
    EXPECT_NE(s.findSinceMark<Exit>(), nullptr);
    EXPECT_EQ(s.e().nextWakeup(), std::nullopt);
    EXPECT_FALSE(s.e().holdsLeadership());
}

TEST(Requests, ResignIsRefusedUnlessActive) {
    Sim s;
    s.toPassive(other(3));
    EXPECT_EQ(s.e().canResign(), RequestResult::NotActive);
    Sim a;
    a.toActive();
    EXPECT_EQ(a.e().canResign(), RequestResult::Accepted);
}

TEST(Requests, PausedReplicaRunsNoActionsAndDoesNotCampaign) {
    Sim s;
    s.toPassive(other(3));
    s.feed(PauseRequest{true});
    s.mark();
    s.feed(WatchEvent{{}, 9});
    s.ackKeepalives(5s);
    EXPECT_EQ(s.countSinceMark<Campaign>(), 0);
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsurePassive));
    s.feed(PauseRequest{false});
    EXPECT_NE(s.last<Campaign>(), nullptr);
}

TEST(Requests, TheClusterPauseStopsCampaignsAndAReplicasOwnResumeDoesNotEndIt) {
    Sim s;
    s.toPassive(other(3));
    s.feed(PauseRequest{true, true});
    EXPECT_TRUE(s.e().paused());
    s.mark();
    s.feed(WatchEvent{{}, 9});
    s.ackKeepalives(5s);
    s.feed(PauseRequest{false});  // promctl resume ID: this replica's own pause only
    s.ackKeepalives(5s);
    EXPECT_EQ(s.countSinceMark<Campaign>(), 0);
    EXPECT_TRUE(s.e().paused());
    s.feed(PauseRequest{false, true});
    EXPECT_FALSE(s.e().paused());
    EXPECT_NE(s.findSinceMark<Campaign>(), nullptr);
}

TEST(Requests, SwitchoverAndResignAreRefusedWhileTheClusterIsPausedAndDoNothing) {
    Sim s;
    s.toActive(5);
    s.feed(PauseRequest{true, true});
    EXPECT_EQ(s.e().canResign(), RequestResult::Paused);
    EXPECT_EQ(s.e().canSwitchover("1", {"0", "1", "2"}), RequestResult::Paused);
    s.mark();
    s.feed(ResignRequest{});
    s.feed(SwitchoverRequest{"1"});
    EXPECT_EQ(s.e().role(), Role::Active);
    EXPECT_EQ(s.findSinceMark<RunAction>(), nullptr);
    s.feed(PauseRequest{true});  // a replica's own pause does not refuse them
    s.feed(PauseRequest{false, true});
    EXPECT_EQ(s.e().canResign(), RequestResult::Accepted);
}

TEST(Requests, APausedActiveDoesNotResignOnFailedChecksAndRetriesOnceResumed) {
    Sim s;
    s.toActive(5);
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(s.nextAction().kind, ActionKind::EnsureActive);
        s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Failed, "exit 1"});
    }
    EXPECT_EQ(s.nextAction().kind, ActionKind::EnsureActive);
    s.feed(PauseRequest{true, true});  // maintenance starts while the third check runs
    s.mark();
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Failed, "exit 1"});
    s.ackKeepalives(10s);
    EXPECT_EQ(s.e().role(), Role::Active);
    EXPECT_TRUE(s.e().holdsLeadership());
    EXPECT_EQ(s.findSinceMark<RunAction>(), nullptr);
    EXPECT_EQ(s.findSinceMark<DeleteLeader>(), nullptr);
    s.feed(PauseRequest{false, true});  // the check that was due runs at once
    ASSERT_NE(s.last<RunAction>(), nullptr);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsureActive);
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Failed, "exit 1"});
    EXPECT_EQ(s.e().role(), Role::Demoting);
}

TEST(Requests, AStoreRequestIsForTheActiveHoldingItsTokenOnly) {
    Sim s;
    s.toActive(5);
    EXPECT_TRUE(s.e().isAddressedAs(5));
    EXPECT_FALSE(s.e().isAddressedAs(4));  // an earlier active's request
    EXPECT_FALSE(s.e().isAddressedAs(0));
    Sim p;
    p.toPassive(other(7));
    EXPECT_FALSE(p.e().isAddressedAs(7));  // the token it follows is not its own
}

TEST(Wakeups, NeverAskToBeWokenInThePast) {
    Sim s;
    s.toActive();
    s.feed(PauseRequest{true});
    for (int i = 0; i < 100; ++i) {
        auto w = s.e().nextWakeup();
        if (!w) break;
        EXPECT_GT(*w, s.now);
        s.now = *w;
        s.feed(Tick{});
    }
}

namespace {
Params withPeers() {
    auto p = Sim::defaults();
    p.restartablePeers = {"1", "2"};
    p.restartPeerBackoff = 30000ms;
    p.membersInterval = 2500ms;
    return p;
}
}  // namespace

TEST(RestartPeer, TheActiveRestartsAPeerWhoseMemberKeyIsMissingLongerThanTheTimeout) {
    Sim s(withPeers());
    s.toActive();
    ASSERT_NE(s.last<ReadMembers>(), nullptr);  // first read when it became active
    s.feed(MembersRead{{"0", "1"}});
    s.mark();
    // Peer 2 is gone; peer 1 is alive. The active reads member keys every 2.5 s.
    for (int i = 0; i < 4; ++i) {
        s.ackKeepalives(2500ms);
        ASSERT_NE(s.findSinceMark<ReadMembers>(), nullptr);
        s.feed(MembersRead{{"0", "1"}});
        if (auto* r = s.last<RunAction>()) {
            EXPECT_EQ(r->kind, ActionKind::RestartPeer);
            EXPECT_EQ(r->peer, "2");
            EXPECT_GE(i, 1) << "restarted before the peer was missing for the timeout (5 s)";
            s.feed(ActionFinished{ActionKind::RestartPeer, ActionOutcome::AlreadyInMode, ""});
        }
    }
    int restarts = 0;
    s.mark();
    // Missing for another 20 s: no second restart within the 30 s backoff.
    for (int i = 0; i < 8; ++i) {
        s.ackKeepalives(2500ms);
        s.feed(MembersRead{{"0", "1"}});
        if (auto* r = s.last<RunAction>(); r && r->kind == ActionKind::RestartPeer) {
            ++restarts;
            s.feed(ActionFinished{ActionKind::RestartPeer, ActionOutcome::AlreadyInMode, ""});
        }
    }
    EXPECT_EQ(restarts, 0);
}

TEST(RestartPeer, APassiveNeverRestartsPeers) {
    Sim s(withPeers());
    s.mark();
    s.toPassive(other(3));
    s.ackKeepalives(20s);
    EXPECT_EQ(s.countSinceMark<ReadMembers>(), 0);
}

TEST(RestartPeer, ADemotionCancelsARunningRestart) {
    Sim s(withPeers());
    s.toActive();
    s.feed(MembersRead{{"0"}});
    s.ackKeepalives(2500ms);
    s.feed(MembersRead{{"0"}});
    s.ackKeepalives(2500ms);
    s.feed(MembersRead{{"0"}});
    ASSERT_NE(s.last<RunAction>(), nullptr);
    ASSERT_EQ(s.last<RunAction>()->kind, ActionKind::RestartPeer);
    s.feed(WatchEvent{{}, 40});
    EXPECT_NE(s.last<CancelAction>(), nullptr);
    s.feed(ActionFinished{ActionKind::RestartPeer, ActionOutcome::Cancelled, ""});
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
}

TEST(Switchover, TheTargetCampaignsAtOnceAndTheOthersGiveItOneTtl) {
    auto p = Sim::defaults();
    p.campaignDelay = 3 * kPriorityStep;  // the target has the lowest priority, yet goes first
    Sim target(p);
    target.toPassive(other(5, "1"));
    auto b = Sim::defaults();
    b.self = "2";
    Sim bystander(b);
    bystander.toPassive(other(5, "1"));
    LeaderKey handing = other(5, "1");
    handing.handoverTo = "0";
    target.feed(WatchEvent{handing, 9});
    bystander.feed(WatchEvent{handing, 9});
    target.feed(WatchEvent{{}, 10});
    bystander.mark();
    bystander.feed(WatchEvent{{}, 10});
    EXPECT_NE(target.last<Campaign>(), nullptr);
    bystander.ackKeepalives(4900ms);
    EXPECT_EQ(bystander.countSinceMark<Campaign>(), 0);
    bystander.ackKeepalives(200ms);  // the target never came: campaign after one TTL
    EXPECT_EQ(bystander.countSinceMark<Campaign>(), 1);
}

TEST(Switchover, OnceTheTargetTookOverTheOthersNoLongerWaitForIt) {
    // promctl switchover 1, then promctl resign: the bystander's one-TTL wait for the target
    // ended when the target's key appeared; the target's resign is a plain failover.
    auto b = Sim::defaults();
    b.self = "2";
    Sim bystander(b);
    bystander.toPassive(other(5, "0"));
    LeaderKey handing = other(5, "0");
    handing.handoverTo = "1";
    bystander.feed(WatchEvent{handing, 9});
    bystander.feed(WatchEvent{{}, 10});
    bystander.feed(WatchEvent{other(11, "1"), 11});  // the target took over
    bystander.ackKeepalives(100ms);
    bystander.mark();
    bystander.feed(WatchEvent{{}, 12});  // and resigned
    bystander.ackKeepalives(500ms);
    EXPECT_EQ(bystander.countSinceMark<Campaign>(), 1) << "waited for a target that already took over and left";
}

TEST(Switchover, TheActiveRunsEnsurePassiveThenMarksThenDeletes) {
    Sim s;
    s.toActive(5);
    EXPECT_EQ(s.e().canSwitchover("0", {"0", "1", "2"}), RequestResult::InvalidArgs);
    EXPECT_EQ(s.e().canSwitchover("9", {"0", "1", "2"}), RequestResult::InvalidArgs);
    EXPECT_EQ(s.e().canSwitchover("2", {"0", "1", "2"}), RequestResult::Accepted);
    s.feed(SwitchoverRequest{"2"});
    EXPECT_EQ(s.e().role(), Role::Demoting);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    ASSERT_NE(s.last<MarkHandover>(), nullptr);
    EXPECT_EQ(s.last<MarkHandover>()->target, "2");
    EXPECT_EQ(s.last<DeleteLeader>(), nullptr);
    s.feed(HandoverMarked{});
    ASSERT_NE(s.last<DeleteLeader>(), nullptr);
    s.feed(ResignDone{});  // before the watch reports the delete
    EXPECT_EQ(s.e().role(), Role::Passive);
    s.mark();
    s.ackKeepalives(1s);
    EXPECT_EQ(s.e().role(), Role::Passive);
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsureActive));
}

TEST(Switchover, RefusedWhenNotActive) {
    Sim s;
    s.toPassive(other(3));
    EXPECT_EQ(s.e().canSwitchover("", {"0", "1"}), RequestResult::NotActive);
}

// ---- found by the cluster simulation (tests/sim) and the hostile-store review (#9, #10) ----

TEST(ActiveReplica, AtTheDeadlineRevokesItsLeaseOnlyAfterEnsurePassiveFinished) {
    // Seed 24 on the old core: the revoke reached the store before ensure-passive had finished
    // (the deadline passed through one-way loss), a peer campaigned at once: two actives.
    Sim s;
    s.toActive();
    s.mark();
    s.runUntil(*s.e().deadline());  // keepalives unanswered; the monitor's ensure-active runs
    EXPECT_EQ(s.e().role(), Role::Demoting);
    ASSERT_NE(s.findSinceMark<CancelAction>(), nullptr);
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Cancelled, ""});
    ASSERT_TRUE(s.ranSinceMark(ActionKind::EnsurePassive));
    EXPECT_EQ(s.findSinceMark<RevokeLease>(), nullptr);
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    ASSERT_NE(s.last<RevokeLease>(), nullptr);
    EXPECT_EQ(s.last<RevokeLease>()->lease, kLease);
}

TEST(Resign, AWatchEventOlderThanTheDeleteNeverMakesTheKeyOursAgain) {
    // Seed 6231: ResignDone arrived before the watch delivered the handover mark; the mark
    // (the key still ours on our lease) re-promoted the replica that had just handed over.
    Sim s;
    s.toActive(5);
    s.feed(WatchEvent{{true, "0", kLease, 5, {}}, 6});
    s.feed(SwitchoverRequest{"1"});
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    ASSERT_NE(s.last<MarkHandover>(), nullptr);
    s.feed(HandoverMarked{});
    ASSERT_NE(s.last<DeleteLeader>(), nullptr);
    s.feed(ResignDone{});
    s.mark();
    s.feed(WatchEvent{{true, "0", kLease, 5, "1"}, 7});  // the mark, delivered late
    EXPECT_EQ(s.e().staleReplies(), 0u);
    EXPECT_EQ(s.e().role(), Role::Passive);
    EXPECT_FALSE(s.e().holdsLeadership());
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsureActive));
}

TEST(Restart, WithoutAPersistedDeadlineRunsEnsurePassiveAtOnce) {
    // A prom restarted without state (lease file lost) cannot know how long its service may
    // still run: it must not wait TTL - margin for a store that does not answer.
    Sim s;
    s.feed(Start{});
    ASSERT_NE(s.last<RunAction>(), nullptr);
    EXPECT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
}

TEST(Restart, IsPassiveByThePreviousRunsDeadlineWhenTheStoreIsSilent) {
    // Seed 4388 (with --no-fence): prom killed during a partition and restarted; the new run
    // waited a full TTL - margin while the old lease expired in the store.
    Sim s;
    TimePoint previousDeadline = s.now + 300ms;
    s.feed(Start{kLease, previousDeadline});
    s.mark();
    s.runUntil(previousDeadline - 1ms);
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsurePassive));
    s.runUntil(previousDeadline);
    EXPECT_TRUE(s.ranSinceMark(ActionKind::EnsurePassive));
}

TEST(Restart, PersistsTheDeadlineBeforeEnsureActiveAndForgetsItOncePassive) {
    Sim s;
    s.toPassive();
    s.feed(CampaignResult{true, {true, "0", kLease, 5, {}}, 5});
    const PersistLease* p = nullptr;
    bool persistedBeforeRun = false;
    for (const auto& e : s.lastEffects()) {
        if (auto* q = std::get_if<PersistLease>(&e)) p = q;
        if (std::holds_alternative<RunAction>(e)) persistedBeforeRun = p != nullptr;
    }
    ASSERT_TRUE(persistedBeforeRun);
    ASSERT_TRUE(p->deadline);
    EXPECT_EQ(*p->deadline, *s.e().deadline());
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Switched, ""});
    s.feed(ResignRequest{});
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    ASSERT_NE(s.last<PersistLease>(), nullptr);
    EXPECT_FALSE(s.last<PersistLease>()->deadline);
}

TEST(FencingToken, ZeroIsAValidTokenAndItsHolderStillDemotesAtTheDeadline) {
    // MUSIC's first lock reference ends in 0000000000: the old core took token 0 for "not
    // held", never demoted, and ran ensure-active hundreds of times a second.
    Sim s;
    s.toPassive();
    s.feed(CampaignResult{true, {true, "0", kLease, 0, {}}, 1});
    EXPECT_TRUE(s.e().holdsLeadership());
    EXPECT_EQ(s.e().role(), Role::Promoting);
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Switched, ""});
    EXPECT_EQ(s.e().role(), Role::Active);
    s.mark();
    s.storeSilent(5s);
    EXPECT_NE(s.e().role(), Role::Active);
    EXPECT_LE(s.countSinceMark<RunAction>(), 8);
    EXPECT_TRUE(s.ranSinceMark(ActionKind::EnsurePassive));
}

TEST(Requests, AStaleLeaseFailureDoesNotStartASecondGrant) {
    Sim s;
    s.feed(Start{});
    RequestId first = s.lastId<GrantLease>();
    s.feed(LeaseRequestFailed{0, "timeout", first + 1000});  // answers nothing in flight
    s.runFor(1s);
    EXPECT_EQ(s.lastId<GrantLease>(), first);
    EXPECT_EQ(s.e().staleReplies(), 1u);
}

TEST(Requests, ACampaignWonOnALeaseNoLongerRenewedIsNotLeadership) {
    // The old core became Promoting holding a key on lease 201 while renewing lease 202.
    Sim s;
    s.toPassive();
    ASSERT_NE(s.last<Campaign>(), nullptr);
    s.feed(CampaignResult{true, {true, "0", kLease + 1, 9, {}}, 9});
    EXPECT_EQ(s.e().staleReplies(), 0u);  // answered, and refused: not dropped as stale
    EXPECT_FALSE(s.e().holdsLeadership());
    EXPECT_EQ(s.e().role(), Role::Passive);
}

TEST(Requests, AWatchEventBelowTheKnownRevisionIsIgnored) {
    Sim s;
    s.toPassive(other(3), 20);
    s.mark();
    s.feed(WatchEvent{{}, 15});  // a delete older than the read: the key still exists
    EXPECT_EQ(s.e().staleReplies(), 1u);
    EXPECT_EQ(s.countSinceMark<Campaign>(), 0);
    EXPECT_EQ(s.e().leader(), "1");
}

TEST(Lease, AStoreReportedTtlAboveTheRequestedOneIsClamped) {
    Sim s;
    s.toActive();
    s.runFor(1700ms);
    ASSERT_NE(s.last<KeepAlive>(), nullptr);
    TimePoint sent = s.now;
    s.feed(KeepaliveAcked{kLease, Duration(100'000'000'000LL), sent});
    EXPECT_EQ(*s.e().deadline(), sent + 5000ms - 1250ms);
}

TEST(Reload, RetryAttemptsApplyWithoutARestart) {
    Sim s;
    s.toActive();
    auto p = Sim::defaults();
    p.retryAttempts = 1;
    s.e().reconfigure(p);
    s.runFor(1000ms);
    ASSERT_NE(s.last<RunAction>(), nullptr);
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Failed, "exit 1"});
    EXPECT_EQ(s.e().role(), Role::Demoting);
}

TEST(Stop, WhileDemotingLetsEnsurePassiveFinishBeforeExiting) {
    Sim s;
    s.toActive();
    s.runUntil(*s.e().deadline());  // store silent: demoting, ensure-passive running
    ASSERT_EQ(s.e().role(), Role::Demoting);
    s.feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Cancelled, ""});
    ASSERT_EQ(s.last<RunAction>()->kind, ActionKind::EnsurePassive);
    s.mark();
    s.feed(StopRequest{});
    EXPECT_EQ(s.findSinceMark<CancelAction>(), nullptr);
    EXPECT_EQ(s.findSinceMark<Exit>(), nullptr);
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    EXPECT_NE(s.findSinceMark<Exit>(), nullptr);
}

TEST(FencingToken, AKeyWithTokenZeroFoundOnOurLeaseIsOurs) {
    // MUSIC: the replica learns it heads the lock queue (token 0) from a read, not a campaign.
    Sim s;
    s.toPassive();
    s.feed(WatchEvent{{true, "0", kLease, 0, {}}, 5});
    EXPECT_TRUE(s.e().holdsLeadership());
    EXPECT_EQ(s.e().role(), Role::Promoting);
}

TEST(ActiveReplica, AKeyFoundOursOnALeasePastItsDeadlineIsNotTakenUp) {
    // Seed 1000509702 (long run): keepalives failed for a while, then a read said the key was
    // still ours; the replica ran ensure-active after its deadline while the store expired it.
    Sim s;
    s.toPassive();
    s.storeSilent(3800ms);  // past lastAckSent + TTL - margin
    s.mark();
    // The watch (open since the start) delivers the key: no read is in flight, so a LeaderRead
    // would be dropped as stale and prove nothing.
    s.feed(WatchEvent{{true, "0", kLease, 9, {}}, 9});
    EXPECT_EQ(s.e().staleReplies(), 0u);
    EXPECT_FALSE(s.e().holdsLeadership());
    EXPECT_FALSE(s.ranSinceMark(ActionKind::EnsureActive));
}

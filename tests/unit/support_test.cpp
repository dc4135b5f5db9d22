// Peer support (fast mode) under fake clocks: the supporter's and the holder's rules, and the
// timing rule that makes them safe with drifting clocks.
#include "core/support.hpp"

#include <gtest/gtest.h>

#include <cmath>

using namespace prom::core;
using namespace std::chrono_literals;
using prom::Duration;
using prom::TimePoint;

namespace {

const TimePoint t0{Duration(1'000'000)};
constexpr SupportTiming kTiming{200ms, 1e-3};

Supporter readySupporter(std::int64_t floor = 10) {
    Supporter s(kTiming);
    s.start(t0 - 1s);  // long started: the restart wait is over
    s.setFloor(floor);
    return s;
}

}  // namespace

TEST(Supporter, SupportsAnEpochForSupportMsAfterReceiptThenWithdrawsItForGood) {
    auto s = readySupporter();
    EXPECT_TRUE(s.onHeartbeat(t0, "1", 11));
    EXPECT_TRUE(s.expire(t0 + 199ms).empty());
    EXPECT_FALSE(s.withdrawn(11));
    EXPECT_EQ(s.nextExpiry(), t0 + 200ms);
    EXPECT_EQ(s.expire(t0 + 200ms), std::vector<std::int64_t>{11});
    EXPECT_TRUE(s.withdrawn(11));
    EXPECT_EQ(s.latestWithdrawn(), 11);
    EXPECT_TRUE(s.expire(t0 + 300ms).empty()) << "a withdrawal is reported once";
    EXPECT_FALSE(s.onHeartbeat(t0 + 300ms, "1", 11)) << "never supported again";
    EXPECT_TRUE(s.onHeartbeat(t0 + 300ms, "1", 12)) << "a new epoch is another key";
}

TEST(Supporter, EachHeartbeatExtendsSupportFromItsReceipt) {
    auto s = readySupporter();
    EXPECT_TRUE(s.onHeartbeat(t0, "1", 11));
    EXPECT_TRUE(s.onHeartbeat(t0 + 150ms, "1", 11));
    EXPECT_TRUE(s.expire(t0 + 349ms).empty());
    EXPECT_EQ(s.expire(t0 + 350ms).size(), 1u);
}

TEST(Supporter, AHeartbeatArrivingAtTheEndOfSupportComesTooLate) {
    auto s = readySupporter();
    EXPECT_TRUE(s.onHeartbeat(t0, "1", 11));
    // expire() has not run yet (the event came first), but support has run out at this instant.
    EXPECT_FALSE(s.onHeartbeat(t0 + 200ms, "1", 11));
    EXPECT_EQ(s.expire(t0 + 200ms).size(), 1u);
}

TEST(Supporter, AfterARestartItSupportsAndWithdrawsNothingForSupportTimesOnePlusDrift) {
    Supporter s(kTiming);
    s.start(t0);
    s.setFloor(10);
    s.onKey(t0, "1", 11);  // the store names 1 as holder; 1 sends nothing
    // 200 ms · 1.001 = 200.2 ms, rounded up: quiet until t0 + 201 ms.
    EXPECT_TRUE(s.quiet(t0 + 200ms));
    EXPECT_FALSE(s.onHeartbeat(t0 + 200ms, "1", 12));
    EXPECT_TRUE(s.expire(t0 + 200ms).empty());
    EXPECT_FALSE(s.quiet(t0 + 201ms));
    // The key's holder gets a full S from the end of the wait before a withdrawal.
    EXPECT_TRUE(s.expire(t0 + 400ms).empty());
    EXPECT_EQ(s.expire(t0 + 401ms), std::vector<std::int64_t>{11});
}

TEST(Supporter, NeverSupportsAnEpochAtOrBelowTheFirstRevisionItRead) {
    Supporter s(kTiming);
    s.start(t0 - 1s);
    EXPECT_FALSE(s.onHeartbeat(t0, "1", 11)) << "before any read it cannot know which epochs are old";
    s.setFloor(11);
    s.setFloor(50);  // only the first read counts
    EXPECT_FALSE(s.onHeartbeat(t0, "1", 11)) << "its previous incarnation may have withdrawn it";
    EXPECT_TRUE(s.onHeartbeat(t0, "1", 12));
}

TEST(Supporter, AnEpochBelongsToOneHolder) {
    auto s = readySupporter();
    EXPECT_TRUE(s.onHeartbeat(t0, "1", 11));
    EXPECT_FALSE(s.onHeartbeat(t0, "2", 11));
}

TEST(Supporter, ForgetsEpochsOlderThanTheNewestKey) {
    auto s = readySupporter();
    EXPECT_TRUE(s.onHeartbeat(t0, "1", 11));
    s.forgetBelow(12);
    EXPECT_FALSE(s.nextExpiry().has_value());
    EXPECT_FALSE(s.onHeartbeat(t0, "1", 11));
}

TEST(HolderSupport, CountsSupportFromTheSendTimeShrunkByTheDriftBound) {
    HolderSupport h(kTiming, 3);
    // 200 · 0.999 / 1.001 = 199.6 ms, rounded down.
    EXPECT_EQ(h.counted(), 199ms);
    h.begin(11);
    h.sent(t0, 1);
    EXPECT_FALSE(h.deadline().has_value()) << "no majority yet";
    h.acked("1", 11, 1, true);
    EXPECT_EQ(h.deadline(), t0 + 199ms);
    EXPECT_EQ(h.supporters(t0 + 198ms), 1u);
    EXPECT_EQ(h.supporters(t0 + 199ms), 0u);
}

TEST(HolderSupport, DeadlineIsTheQthLatestCountingTheHolderItself) {
    HolderSupport h(kTiming, 5);  // quorum 3: the holder and two peers
    EXPECT_EQ(h.quorum(), 3);
    h.begin(11);
    h.sent(t0, 1);
    h.sent(t0 + 25ms, 2);
    h.sent(t0 + 50ms, 3);
    h.acked("1", 11, 3, true);
    EXPECT_FALSE(h.deadline().has_value());
    h.acked("2", 11, 1, true);
    EXPECT_EQ(h.deadline(), t0 + 199ms) << "second latest of {50, 0} + 199";
    h.acked("3", 11, 2, true);
    EXPECT_EQ(h.deadline(), t0 + 25ms + 199ms);
    h.acked("3", 11, 1, true);  // a late ack of an older heartbeat never moves it back
    EXPECT_EQ(h.deadline(), t0 + 25ms + 199ms);
}

TEST(HolderSupport, IgnoresRefusalsOtherEpochsAndUnknownHeartbeats) {
    HolderSupport h(kTiming, 3);
    h.begin(11);
    h.sent(t0, 1);
    h.acked("1", 11, 1, false);
    h.acked("1", 10, 1, true);
    h.acked("1", 11, 2, true);
    EXPECT_FALSE(h.deadline().has_value());
    h.acked("1", 11, 1, true);
    h.begin(12);  // a new epoch starts from nothing
    EXPECT_FALSE(h.deadline().has_value());
}

TEST(HolderSupport, ASingleReplicaNeedsNoPeer) {
    HolderSupport h(kTiming, 1);
    h.begin(11);
    EXPECT_EQ(h.deadline(), TimePoint::max());
}

namespace {
/** Real time (µs) at which a clock running at rate r (local = r · real) shows local ms. */
double realAt(double localMs, double rate) {
    return localMs / rate;
}
}  // namespace

TEST(SupportTimingRule, HolderDeadlineEndsBeforeTheSupporterCanWithdrawWithClocksDriftingByRho) {
    // Every combination of clock rates within ±rho and message delays: the holder's deadline
    // (counted from its send) passes in real time no later than the supporter's withdrawal
    // (counted from its receipt), which is what a takeover waits for.
    const double rho = kTiming.drift;
    HolderSupport h(kTiming, 3);
    const double counted = static_cast<double>(h.counted().count());
    const double S = static_cast<double>(kTiming.support.count());
    for (double holderRate : {1 - rho, 1.0, 1 + rho})
        for (double supporterRate : {1 - rho, 1.0, 1 + rho})
            for (double delay : {0.0, 0.001, 1.0, 50.0, 150.0}) {
                const double sendReal = 1000.0;
                const double holderDeadlineReal = realAt(sendReal * holderRate + counted, holderRate);
                const double receiveReal = sendReal + delay;
                const double withdrawReal = realAt(receiveReal * supporterRate + S, supporterRate);
                EXPECT_LE(holderDeadlineReal, withdrawReal)
                    << "holder rate " << holderRate << ", supporter rate " << supporterRate << ", delay " << delay;
            }
}


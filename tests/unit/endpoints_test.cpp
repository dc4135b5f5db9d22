#include "store/endpoints.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace prom;
using namespace std::chrono_literals;
using store::Endpoints;

namespace {
prom::TimePoint at(int ms) {
    return prom::TimePoint(prom::Duration(ms));
}
}  // namespace

TEST(Endpoints, EachLogicalRequestTriesEveryEndpointOnceStartingWithThePreferred) {
    Endpoints e(3, {}, 1);
    EXPECT_EQ(e.plan(), (std::vector<std::size_t>{0, 1, 2}));
    e.succeeded(2, at(0));
    EXPECT_EQ(e.plan(), (std::vector<std::size_t>{2, 0, 1}));
}

// Issue 9 item 1: a timed-out request did not move to the next endpoint.
TEST(Endpoints, AnyFailureOfThePreferredMovesTheNextRequestOn) {
    Endpoints e(3, {}, 1);
    e.failed(0, at(0));  // a timeout, a 503 no leader, garbage: all the same here
    EXPECT_EQ(e.preferred(), 1u);
    EXPECT_FALSE(e.healthy(0));
    // The member that failed is tried last.
    EXPECT_EQ(e.plan(), (std::vector<std::size_t>{1, 2, 0}));
    e.succeeded(1, at(10));
    EXPECT_EQ(e.preferred(), 1u);
}

TEST(Endpoints, ALateFailureOfAnotherEndpointDoesNotMoveRequestsAway) {
    Endpoints e(3, {}, 1);
    e.failed(0, at(0));
    e.succeeded(1, at(5));
    e.failed(0, at(900));  // a request still in flight on 0 when we moved
    EXPECT_EQ(e.preferred(), 1u);
}

TEST(Endpoints, SkipsEndpointsThatFailedWhenMovingOn) {
    Endpoints e(3, {}, 1);
    e.failed(1, at(0));  // not preferred: only marked
    e.failed(0, at(1));
    EXPECT_EQ(e.preferred(), 2u);
    EXPECT_EQ(e.plan(), (std::vector<std::size_t>{2, 0, 1}));
}

// Issue 9 item 2: with every endpoint refusing, the rotation never ended.
TEST(Endpoints, ARoundThatFailedEverywhereStartsABackoffThatGrowsToItsCap) {
    Endpoints e(3, {50ms, 500ms}, 7);
    prom::TimePoint now = at(1000);
    std::vector<prom::Duration> delays;
    for (int round = 0; round < 8; ++round) {
        EXPECT_LE(e.nextRoundAt(), now);
        for (std::size_t i : e.plan()) e.failed(i, now);
        e.roundFailed(now);
        delays.push_back(e.nextRoundAt() - now);
        now = e.nextRoundAt();
    }
    EXPECT_GE(delays[0], 25ms);
    EXPECT_LE(delays[0], 50ms);
    for (auto d : delays) EXPECT_LE(d, 500ms);
    EXPECT_GE(delays.back(), 250ms);  // jitter keeps at least half the cap
    EXPECT_EQ(e.failedRounds(), 8);
    // One answer ends the backoff.
    e.succeeded(2, now);
    EXPECT_EQ(e.failedRounds(), 0);
    EXPECT_LE(e.nextRoundAt(), now);
}

TEST(Endpoints, ConcurrentFailedRoundsExtendOneBackoff) {
    Endpoints e(2, {50ms, 500ms}, 3);
    e.roundFailed(at(0));
    auto first = e.nextRoundAt();
    e.roundFailed(at(1));  // a second request of the same outage
    EXPECT_EQ(e.nextRoundAt(), first);
    EXPECT_EQ(e.failedRounds(), 1);
}

TEST(Endpoints, JitterSpreadsDelaysOverHalfToAll) {
    Endpoints e(1, {}, 42);
    std::set<std::int64_t> seen;
    for (int i = 0; i < 200; ++i) {
        auto d = e.jitter(400ms);
        EXPECT_GE(d, 200ms);
        EXPECT_LE(d, 400ms);
        seen.insert(d.count());
    }
    EXPECT_GT(seen.size(), 50u);
}

TEST(Endpoints, ASingleEndpointStaysPreferredThroughFailures) {
    Endpoints e(1, {}, 1);
    e.failed(0, at(0));
    EXPECT_EQ(e.preferred(), 0u);
    EXPECT_EQ(e.plan(), (std::vector<std::size_t>{0}));
}

// The election core in fast mode (peer support), under a fake clock: every rule of
// doc/election.md "Fast mode".
#include <gtest/gtest.h>

#include "core/election.hpp"

using namespace prom::core;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kLease = 100;

Params fastParams(const std::string& self = "0") {
    Params p;
    p.self = self;
    p.requestedTtl = 5000ms;
    p.demoteMargin = 1250ms;
    p.monitorInterval = 1000ms;
    p.retryBackoff = 200ms;
    p.storeRetry = 500ms;
    p.resignCooldown = 5000ms;
    p.fast = true;
    for (std::string id : {"0", "1", "2"})
        if (id != self) p.peers.push_back(id);
    p.heartbeat = 25ms;
    p.support = {200ms, 1e-3};
    p.stopMargin = 50ms;
    return p;
}

class Fast {
public:
    explicit Fast(Params p = fastParams()) : m_e(p) {}

    const std::vector<Effect>& feed(const Event& e) {
        m_last = m_e.handle(now, e);
        for (const auto& eff : m_last)
            if (std::holds_alternative<SendHeartbeat>(eff)) lastHeartbeatAt = now;
        m_all.insert(m_all.end(), m_last.begin(), m_last.end());
        return m_last;
    }
    template <class T>
    const T* last() const {
        for (auto it = m_all.rbegin(); it != m_all.rend(); ++it)
            if (auto* p = std::get_if<T>(&*it)) return p;
        return nullptr;
    }
    template <class T>
    int count() const {
        int n = 0;
        for (const auto& e : m_all) n += std::holds_alternative<T>(e);
        return n;
    }
    void clear() { m_all.clear(); }
    bool ran(ActionKind k) const {
        for (const auto& e : m_all)
            if (auto* r = std::get_if<RunAction>(&e); r && r->kind == k) return true;
        return false;
    }
    /** Advances to t delivering the Ticks the daemon's timer would; the store acks keepalives
     *  at once; `peersAck` peers support every heartbeat of this replica. */
    void runUntil(TimePoint t, std::vector<std::string> peersAck = {}) {
        for (;;) {
            auto w = m_e.nextWakeup();
            bool end = !w || *w > t;
            now = end ? t : *w;
            feed(Tick{});
            answer(peersAck);
            if (end) return;
        }
    }
    void answer(const std::vector<std::string>& peersAck) {
        for (int round = 0; round < 3; ++round) {
            std::vector<Event> replies;
            for (const auto& e : m_last) {
                if (auto* k = std::get_if<KeepAlive>(&e))
                    replies.push_back(KeepaliveAcked{k->lease, 5000ms, now, k->id});
                if (auto* h = std::get_if<SendHeartbeat>(&e))
                    for (const auto& p : peersAck) replies.push_back(PeerAck{p, h->epoch, h->seq, h->epoch > 0});
            }
            if (replies.empty()) return;
            std::vector<Effect> all;
            for (const auto& r : replies) {
                feed(r);
                all.insert(all.end(), m_last.begin(), m_last.end());
            }
            m_last = std::move(all);
        }
    }
    /** Start, lease, read (leader), ensure-passive done: passive. */
    void toPassive(LeaderKey leader = {}, std::int64_t revision = 1, const std::vector<std::string>& peersAnswer = {}) {
        feed(Start{});
        peersUp(peersAnswer);
        feed(LeaseGranted{kLease, 5000ms, now, last<GrantLease>()->id});
        feed(LeaderRead{leader, revision, last<ReadLeader>()->id});
        feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::AlreadyInMode, "", last<RunAction>()->id});
        EXPECT_EQ(m_e.role(), Role::Passive);
    }
    /** Peer round trips (acks of epoch-0 heartbeats) so that a campaign writes a fast key. */
    void peersUp(const std::vector<std::string>& peers) {
        for (const auto& p : peers) {
            ASSERT_NE(last<SendHeartbeat>(), nullptr);
            feed(PeerAck{p, 0, last<SendHeartbeat>()->seq, false});
        }
    }
    /** Wins a fast key with this token and has ensure-active done with peer 1 supporting. */
    void toFastActive(std::int64_t token = 5) {
        toPassive({}, 1, {"1"});
        const Campaign* c = last<Campaign>();
        ASSERT_NE(c, nullptr);
        ASSERT_TRUE(c->fast);
        feed(CampaignResult{true, {true, "0", kLease, token, {}, true}, token, c->id});
        ASSERT_EQ(m_e.role(), Role::Promoting);
        ASSERT_TRUE(m_e.holdsFastKey());
        now += 1ms;
        feed(PeerAck{"1", token, last<SendHeartbeat>()->seq, true});  // answers the epoch's first heartbeat
        ASSERT_TRUE(ran(ActionKind::EnsureActive));
        feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Switched, "", last<RunAction>()->id});
        ASSERT_EQ(m_e.role(), Role::Active);
    }

    Election& e() { return m_e; }
    TimePoint now{Duration(1'000'000)};
    TimePoint lastHeartbeatAt{};

private:
    Election m_e;
    std::vector<Effect> m_last;
    std::vector<Effect> m_all;
};

LeaderKey fastKey(std::int64_t rev, const std::string& who = "1") {
    return {true, who, 999, rev, {}, true};
}

}  // namespace

TEST(FastMode, LeaseModeSendsNoHeartbeats) {
    Params p = fastParams();
    p.fast = false;
    Fast f(p);
    f.toPassive();
    f.runUntil(f.now + 2s);
    EXPECT_EQ(f.count<SendHeartbeat>(), 0);
    ASSERT_NE(f.last<Campaign>(), nullptr);
    EXPECT_FALSE(f.last<Campaign>()->fast);
}

TEST(FastMode, HeartbeatsEveryHeartbeatMs) {
    Fast f;
    f.toPassive({}, 1);
    f.clear();
    f.runUntil(f.now + 250ms);
    EXPECT_GE(f.count<SendHeartbeat>(), 10);
    EXPECT_LE(f.count<SendHeartbeat>(), 11);
}

TEST(FastMode, CampaignWritesAFastKeyOnlyWithRoundTripsToAMajority) {
    Fast slow;
    TimePoint started = slow.now;
    slow.toPassive();
    slow.runUntil(started + 399ms);
    EXPECT_EQ(slow.last<Campaign>(), nullptr) << "waits 2 x support-ms for the peers to answer";
    slow.runUntil(started + 400ms);
    ASSERT_NE(slow.last<Campaign>(), nullptr);
    EXPECT_FALSE(slow.last<Campaign>()->fast) << "no peer answered: the key must be slow";

    Fast fast;
    fast.toPassive({}, 1, {"2"});
    ASSERT_NE(fast.last<Campaign>(), nullptr);
    EXPECT_TRUE(fast.last<Campaign>()->fast);
}

TEST(FastMode, EnsureActiveWaitsUntilAMajoritySupportsTheNewEpoch) {
    Fast f;
    f.toPassive({}, 1, {"1"});
    f.feed(CampaignResult{true, {true, "0", kLease, 5, {}, true}, 5, f.last<Campaign>()->id});
    ASSERT_NE(f.last<SendHeartbeat>(), nullptr);
    EXPECT_EQ(f.last<SendHeartbeat>()->epoch, 5) << "the new epoch is announced at once";
    f.runUntil(f.now + 100ms);  // nobody acks
    EXPECT_FALSE(f.ran(ActionKind::EnsureActive));
    EXPECT_EQ(f.e().role(), Role::Promoting);
    f.runUntil(f.now + 30ms, {"2"});
    EXPECT_TRUE(f.ran(ActionKind::EnsureActive));
    EXPECT_EQ(f.e().peerSupport(), 1u);
}

TEST(FastMode, AFreshFastKeyWithoutSupportIsGivenUpAfterSupportMs) {
    Fast f;
    f.toPassive({}, 1, {"1"});
    TimePoint won = f.now;
    f.feed(CampaignResult{true, {true, "0", kLease, 5, {}, true}, 5, f.last<Campaign>()->id});
    f.runUntil(won + 199ms);
    EXPECT_TRUE(f.e().holdsLeadership());
    f.runUntil(won + 200ms);
    EXPECT_FALSE(f.e().holdsLeadership());
    EXPECT_FALSE(f.ran(ActionKind::EnsureActive));
}

TEST(FastMode, ActiveStopsAtItsSupportDeadlineWhileEtcdIsFine) {
    Fast f;
    f.toFastActive();
    // Support keeps it active for as long as peer 1 acks.
    f.runUntil(f.now + 2s, {"1"});
    EXPECT_EQ(f.e().role(), Role::Active);
    TimePoint sent = f.lastHeartbeatAt;  // acked at once by peer 1
    // From now on no peer answers: deadline = last acked send + 199 ms - 50 ms stop margin.
    f.runUntil(sent + 148ms);
    EXPECT_EQ(f.e().role(), Role::Active);
    f.runUntil(sent + 149ms);
    EXPECT_EQ(f.e().role(), Role::Demoting);
    EXPECT_TRUE(f.ran(ActionKind::EnsurePassive));
    EXPECT_NE(f.last<PublishRole>()->reason.find("peer support lost"), std::string::npos);
}

TEST(FastMode, ALateAckAfterTheSupportDeadlineNeverRestoresTheEpoch) {
    Fast f;
    f.toFastActive(5);
    std::uint64_t seq = f.last<SendHeartbeat>()->seq;
    f.runUntil(f.now + 300ms);
    ASSERT_FALSE(f.e().holdsLeadership());
    auto stale = f.e().staleReplies();
    f.feed(PeerAck{"1", 5, seq, true});
    EXPECT_EQ(f.e().staleReplies(), stale + 1);
    f.feed(WatchEvent{{true, "0", kLease, 5, {}, true}, 50, f.last<Watch>() ? f.last<Watch>()->id : 0});
    EXPECT_FALSE(f.e().holdsLeadership()) << "a fast epoch that lost support is never re-adopted";
}

TEST(FastMode, PassiveTakesOverOnceAMajorityWithdrewTheActivesEpoch) {
    Fast f;
    f.toPassive(fastKey(7), 7);
    f.clear();
    // Holder 1 never heartbeats. The restart wait (201 ms) and then S (200 ms) pass: own withdrawal.
    f.runUntil(f.now + 400ms);
    EXPECT_EQ(f.count<DeleteLeader>(), 0);
    f.runUntil(f.now + 2ms);
    ASSERT_NE(f.last<SendHeartbeat>(), nullptr);
    EXPECT_EQ(f.last<SendHeartbeat>()->withdrawn, 7) << "the withdrawal goes to the peers at once";
    EXPECT_EQ(f.count<DeleteLeader>(), 0) << "its own withdrawal alone is no majority of three";
    // The holder's own word does not count; replica 2's does.
    f.feed(PeerHeartbeat{"1", 0, 1, 7});
    EXPECT_EQ(f.count<DeleteLeader>(), 0);
    f.feed(PeerHeartbeat{"2", 0, 1, 7});
    const DeleteLeader* d = f.last<DeleteLeader>();
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->createRevision, 7) << "guarded by the old create revision";
    f.feed(ResignDone{d->id});
    ASSERT_NE(f.last<Campaign>(), nullptr) << "campaigns at once after the delete";
}

TEST(FastMode, HeartbeatsOfTheHoldersEpochKeepThePassiveFromWithdrawing) {
    Fast f;
    f.toPassive({}, 1, {"2"});
    // Replica 1 wins the race: its key (created after this replica's first read) is supportable.
    f.feed(CampaignResult{false, fastKey(7), 7, f.last<Campaign>()->id});
    TimePoint started = f.now;
    TimePoint end = f.now + 2s;
    std::uint64_t seq = 0;
    while (f.now < end) {
        f.runUntil(f.now + 25ms);
        f.feed(PeerHeartbeat{"1", 7, ++seq, 0});
        ASSERT_NE(f.last<SendAck>(), nullptr);
        if (f.now > started + 250ms) {
            EXPECT_TRUE(f.last<SendAck>()->supported);
        }
        f.feed(PeerHeartbeat{"2", 0, seq, 0});
    }
    EXPECT_EQ(f.count<DeleteLeader>(), 0);
    EXPECT_EQ(f.last<SendHeartbeat>()->withdrawn, 0);
}

TEST(FastMode, ASlowKeyIsNeverTakenOverByWithdrawals) {
    Fast f;
    LeaderKey slow = fastKey(7);
    slow.fast = false;
    f.toPassive(slow, 7);
    f.runUntil(f.now + 1s);
    f.feed(PeerHeartbeat{"2", 0, 1, 7});
    EXPECT_EQ(f.count<DeleteLeader>(), 0);
}

TEST(FastMode, ARestartedPromNeverResumesItsFastKey) {
    Fast f;
    f.feed(Start{kLease, f.now + 100ms});
    EXPECT_EQ(f.count<KeepAlive>(), 0) << "the old lease is not renewed";
    ASSERT_TRUE(f.ran(ActionKind::EnsurePassive));
    EXPECT_EQ(f.count<RevokeLease>(), 0) << "its key must stay until the service is passive";
    f.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, "", f.last<RunAction>()->id});
    ASSERT_NE(f.last<RevokeLease>(), nullptr);
    EXPECT_EQ(f.last<RevokeLease>()->lease, kLease);
    EXPECT_EQ(f.e().role(), Role::Passive);
}

TEST(FastMode, ARestartedSupporterRefusesEpochsItMayHaveWithdrawnBefore) {
    Fast f;
    f.toPassive(fastKey(7), 9);  // the key is older than this incarnation's first read
    f.runUntil(f.now + 300ms);
    f.feed(PeerHeartbeat{"1", 7, 1, 0});
    ASSERT_NE(f.last<SendAck>(), nullptr);
    EXPECT_FALSE(f.last<SendAck>()->supported);
}

TEST(FastMode, ARestartedSupporterWithdrawsNothingDuringItsRestartWait) {
    Fast f;
    f.toPassive(fastKey(7), 7);
    f.runUntil(f.now + 200ms);
    EXPECT_EQ(f.last<SendHeartbeat>()->withdrawn, 0);
    f.feed(PeerHeartbeat{"2", 0, 1, 7});
    EXPECT_EQ(f.count<DeleteLeader>(), 0);
}

TEST(FastMode, AWitnessVotesButNeverCampaignsNorRunsActions) {
    Params p = fastParams("2");
    p.witness = true;
    Fast f(p);
    f.feed(Start{});
    f.feed(LeaseGranted{kLease, 5000ms, f.now, f.last<GrantLease>()->id});
    f.feed(LeaderRead{fastKey(7, "0"), 7, f.last<ReadLeader>()->id});
    EXPECT_EQ(f.e().role(), Role::Passive);
    f.runUntil(f.now + 1s);
    EXPECT_EQ(f.count<RunAction>(), 0);
    f.feed(PeerHeartbeat{"1", 0, 1, 7});
    EXPECT_EQ(f.count<Campaign>(), 0);
    EXPECT_EQ(f.count<DeleteLeader>(), 0);
    EXPECT_EQ(f.last<SendHeartbeat>()->withdrawn, 7) << "it withdraws like any voter";
}

TEST(FastMode, AHeartbeatFromANonMemberIsIgnored) {
    Fast f;
    f.toPassive();
    auto stale = f.e().staleReplies();
    f.feed(PeerHeartbeat{"9", 5, 1, 0});
    EXPECT_EQ(f.e().staleReplies(), stale + 1);
    EXPECT_EQ(f.count<SendAck>(), 0);
}

#include "common/json.hpp"
#include "store/etcd.hpp"
#include "common/base64.hpp"

TEST(FastModeEtcdKey, TheValueCarriesTheFastMarkAndLeaseModeKeysStaySlow) {
    using prom::json::Value;
    auto fast = prom::json::parse(R"({"create_revision":"9","value":"Mgptb2RlPWZhc3Q=","lease":"5"})");  // "2\nmode=fast"
    auto k = prom::store::parseLeaderKv(std::get<Value>(fast));
    EXPECT_EQ(k.holder, "2");
    EXPECT_TRUE(k.fast);
    auto slow = prom::json::parse(R"({"create_revision":"9","value":"Mj4x","lease":"5"})");  // "2>1": a handover mark
    k = prom::store::parseLeaderKv(std::get<Value>(slow));
    EXPECT_EQ(k.holder, "2");
    EXPECT_EQ(k.handoverTo, "1");
    EXPECT_FALSE(k.fast);
}

TEST(FastModeEtcdKey, AHandoverMarkKeepsTheFastMark) {
    // markHandover rewrote a fast key as "ID>TARGET": peers read a slow key while it handed over.
    std::string value = prom::store::encodeLeaderValue("2", "1", true);
    auto kv = prom::json::parse("{\"create_revision\":\"9\",\"lease\":\"5\",\"value\":\"" + prom::base64::encode(value) + "\"}");
    auto k = prom::store::parseLeaderKv(std::get<prom::json::Value>(kv));
    EXPECT_EQ(k.holder, "2");
    EXPECT_EQ(k.handoverTo, "1");
    EXPECT_TRUE(k.fast);
}

// Found by the adversarial review of #11's store control (review11): each test failed on the
// code before its fix.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "core/election.hpp"
#include "election_sim.hpp"
#include "store/control.hpp"

using namespace prom::core;
using namespace std::chrono_literals;
using namespace election_test;

namespace {

/** A prom restarted while its previous run's lease lives: the leader read answers first, then
 *  the keepalive of the resumed lease. */
void resume(Sim& s, std::optional<TimePoint> persistedDeadline, LeaderKey leader) {
    s.feed(Start{kLease, persistedDeadline});
    s.feed(LeaderRead{leader, 30});
    s.feed(KeepaliveAcked{kLease, 5000ms, s.now});
}

bool putsMemberOn(const std::vector<Effect>& effects, std::int64_t lease) {
    for (const auto& fx : effects)
        if (auto* p = std::get_if<PutMember>(&fx); p && p->lease == lease) return true;
    return false;
}

}  // namespace

// promctl -c status showed a restarted prom's member key as its previous run left it (that
// run's pid, its pause, its version) for as long as the resumed lease lived: the key is
// rewritten only once the core names its lease, and a resumed lease was never named.
TEST(ResumedLease, AnActiveRestartedWithinItsLeaseRewritesItsMemberKey) {
    Sim s;
    resume(s, s.now + 3750ms, LeaderKey{true, "0", kLease, 17, {}});
    EXPECT_EQ(s.e().role(), Role::Active);
    EXPECT_TRUE(putsMemberOn(s.all(), kLease));
}

TEST(ResumedLease, APassiveRestartedWithinItsLeaseRewritesItsMemberKey) {
    Sim s;
    resume(s, std::nullopt, LeaderKey{true, "1", 200, 17, {}});
    EXPECT_TRUE(putsMemberOn(s.all(), kLease));
}

// A request prom cannot delete is carried out again by every restarted prom it names (a pause
// request for replica 1 re-paused it at each restart after promctl resume 1): prom answers and
// deletes a request by its key, rebuilt from the id, so a key whose id does not survive
// sanitizing (too long, invalid UTF-8, control characters) is never deleted.
TEST(ControlKeys, ARequestWhoseKeyCannotBeNamedBackIsNotARequest) {
    const std::string pause = "{\"op\":\"pause\",\"target\":\"1\"}";
    for (std::string id : {std::string(300, 'L'), std::string("a\xff"), std::string("a\x1b[2J"), std::string("a\nb")}) {
        prom::store::ControlState s;
        EXPECT_TRUE(prom::store::applyControlKey(s, "control/requests/" + id, pause, 0, 7));
        EXPECT_TRUE(s.requests.empty()) << id;
    }
    prom::store::ControlState s;
    EXPECT_TRUE(prom::store::applyControlKey(s, "control/requests/0123abcd", pause, 0, 7));
    EXPECT_EQ(s.requests.count("0123abcd"), 1u);
}


// promctl -c switchover 1, then promctl -c switchover 0 (back): 0, named by the key that was
// deleted, waited out its resign cooldown (one TTL) before it campaigned, and the bystanders
// gave it that TTL: no active for a whole TTL (1954 ms of a 2 s TTL with real etcd). The
// cooldown keeps a replica that gave up the role from grabbing it back on its own; a replica
// the operator names takes it at once.
TEST(Switchover, BackToTheReplicaThatJustHandedOverCampaignsAtOnce) {
    Sim s;
    s.toActive(5);
    ASSERT_EQ(s.e().role(), Role::Active);
    s.feed(SwitchoverRequest{"1"});
    s.feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::Switched, ""});
    s.feed(HandoverMarked{});
    s.feed(ResignDone{});
    ASSERT_EQ(s.e().role(), Role::Passive);
    s.now += 10ms;
    s.feed(WatchEvent{{}, 10});
    s.feed(WatchEvent{LeaderKey{true, "1", 999, 11, {}}, 11});  // 1 took over
    s.now += 40ms;
    LeaderKey handing{true, "1", 999, 11, "0"};  // and hands back to 0
    s.feed(WatchEvent{handing, 12});
    s.feed(WatchEvent{{}, 13});
    ASSERT_NE(s.last<Campaign>(), nullptr) << "the named target waited out its resign cooldown";
}

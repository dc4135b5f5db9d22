// Fast-mode keys of prom.conf and the timing rules the config check enforces.
#include <gtest/gtest.h>

#include "config/config.hpp"

using namespace prom::config;

namespace {

std::string base(const std::string& election, const std::string& replicas) {
    return "app-name = \"demo\"\nreplicas = [\"0\", \"1\", \"2\"]\n[actions]\nensure-active = \"/bin/true\"\n"
           "ensure-passive = \"/bin/true\"\n[election]\ntimeout-ms = 2000\n" +
           election + "\n" + replicas;
}
const std::string kAddresses =
    "[replica.0]\naddress = \"127.0.0.1:7001\"\n[replica.1]\naddress = \"127.0.0.1:7002\"\n"
    "[replica.2]\naddress = \"127.0.0.1:7003\"\nwitness = true\n";

std::string all(const LoadResult& r) {
    std::string s;
    for (const auto& d : r.diagnostics) s += d.format() + "\n";
    return s;
}

}  // namespace

TEST(FastModeConfig, LeaseModeIsTheDefault) {
    auto r = loadText("t.conf", base("", ""));
    ASSERT_TRUE(r.config) << all(r);
    EXPECT_EQ(r.config->election.mode, ElectionSettings::Mode::Lease);
}

TEST(FastModeConfig, ReadsModeTimingKeyFileAddressesAndWitness) {
    auto r = loadText("t.conf",
                      base("mode = \"fast\"\nheartbeat-ms = 25\nsupport-ms = 200\npeer-key-file = \"/k\"", kAddresses));
    ASSERT_TRUE(r.config) << all(r);
    const auto& c = *r.config;
    EXPECT_EQ(c.election.mode, ElectionSettings::Mode::Fast);
    EXPECT_EQ(c.election.heartbeat.count(), 25);
    EXPECT_EQ(c.election.support.count(), 200);
    EXPECT_EQ(c.election.peerKeyFile, "/k");
    EXPECT_EQ(c.settingsOf("1").address, "127.0.0.1:7002");
    EXPECT_FALSE(c.settingsOf("1").witness);
    EXPECT_TRUE(c.settingsOf("2").witness);
}

TEST(FastModeConfig, SupportShorterThanEightHeartbeatsNamesTheKeysToChange) {
    auto r = loadText("t.conf", base("mode = \"fast\"\nheartbeat-ms = 30\nsupport-ms = 200", kAddresses));
    ASSERT_FALSE(r.config);
    EXPECT_NE(all(r).find("election.support-ms (200 ms) must be at least 8 x election.heartbeat-ms"), std::string::npos)
        << all(r);
    EXPECT_NE(all(r).find("raise support-ms or lower heartbeat-ms"), std::string::npos);
}

TEST(FastModeConfig, EveryReplicaNeedsAnAddress) {
    auto r = loadText("t.conf", base("mode = \"fast\"", "[replica.0]\naddress = \"127.0.0.1:7001\"\n"));
    ASSERT_FALSE(r.config);
    EXPECT_NE(all(r).find("[replica.1] address (UDP host:port) is required"), std::string::npos) << all(r);
}

TEST(FastModeConfig, UnknownModeAndWitnessInLeaseModeAreErrors) {
    EXPECT_FALSE(loadText("t.conf", base("mode = \"quick\"", "")).config);
    auto r = loadText("t.conf", base("", "[replica.2]\nwitness = true\n"));
    ASSERT_FALSE(r.config);
    EXPECT_NE(all(r).find("witness = true needs election.mode = \"fast\""), std::string::npos) << all(r);
}

TEST(FastModeConfig, SupportMustEndBeforeTheLeaseDeadline) {
    auto r = loadText("t.conf", base("mode = \"fast\"\nheartbeat-ms = 200\nsupport-ms = 1600", kAddresses));
    ASSERT_FALSE(r.config);
    EXPECT_NE(all(r).find("must be shorter than the lease deadline"), std::string::npos) << all(r);
}

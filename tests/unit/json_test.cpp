#include <gtest/gtest.h>

#include "common/base64.hpp"
#include "common/json.hpp"
#include "store/etcd.hpp"

using namespace prom;

TEST(Base64, RoundTripsEveryLength) {
    std::string s;
    for (int i = 0; i < 40; ++i) {
        s += static_cast<char>(i * 37);
        EXPECT_EQ(base64::decode(base64::encode(s)), s);
    }
    EXPECT_EQ(base64::encode("/prom/app/leader"), "L3Byb20vYXBwL2xlYWRlcg==");
}

TEST(Base64, RejectsUrlSafeAndUnpaddedInputLikeEtcd) {
    EXPECT_FALSE(base64::decode("-_-_"));
    EXPECT_FALSE(base64::decode("Zm8"));
    EXPECT_FALSE(base64::decode("Zm9v!"));
    EXPECT_EQ(base64::decode("Zm9v"), "foo");
}

TEST(Json, KeepsOffsetsAndDuplicateMembers) {
    auto r = json::parse("{\"a\":1,\n \"a\":\"x\"}");
    auto& v = std::get<json::Value>(r);
    ASSERT_EQ(v.members.size(), 2u);
    EXPECT_EQ(json::lineColumn("{\"a\":1,\n \"a\":\"x\"}", v.members[1].keyOffset), (std::pair<int, int>{2, 2}));
}

TEST(Json, ReadsEtcdInt64StringsBeyondDoublePrecision) {
    auto r = json::parse(R"({"ID":"2324035628102581269","n":7})");
    auto& v = std::get<json::Value>(r);
    EXPECT_EQ(v.find("ID")->asInt(), 2324035628102581269LL);
    EXPECT_EQ(v.find("n")->asInt(), 7);
    EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(Json, ReportsTrailingGarbageAndTruncation) {
    EXPECT_TRUE(std::holds_alternative<json::SyntaxError>(json::parse("{} x")));
    EXPECT_TRUE(std::holds_alternative<json::SyntaxError>(json::parse("{\"a\":")));
    EXPECT_TRUE(std::holds_alternative<json::SyntaxError>(json::parse("<html>502 Bad Gateway</html>")));
    EXPECT_TRUE(std::holds_alternative<json::SyntaxError>(json::parse("")));
}

TEST(Json, QuotesControlCharacters) { EXPECT_EQ(json::quote("a\"b\\\n\x01"), "\"a\\\"b\\\\\\n\\u0001\""); }

TEST(EtcdKv, ParsesAKeyValueWithOmittedDefaults) {
    // Verbatim shape from etcd 3.4's gateway: int64 as strings, lease omitted when 0.
    auto r = json::parse(R"({"key":"L3Byb20vYS9sZWFkZXI=","create_revision":"9","mod_revision":"9","version":"1","value":"MQ=="})");
    auto k = store::parseLeaderKv(std::get<json::Value>(r));
    EXPECT_TRUE(k.exists);
    EXPECT_EQ(k.holder, "1");
    EXPECT_EQ(k.lease, 0);
    EXPECT_EQ(k.createRevision, 9);
}

#include "store/music.hpp"

TEST(MusicUrls, BuildsPromsUrlFromABareHostAndKeepsFullUrls) {
    EXPECT_EQ(store::musicBaseUrl("10.0.0.1", 2), "http://10.0.0.1:8080/MUSIC/rest/v2");
    EXPECT_EQ(store::musicBaseUrl("https://music.example:8443/MUSIC/rest/v2/", 2), "https://music.example:8443/MUSIC/rest/v2");
}

TEST(MusicFencingToken, IsTheNumberOfTheLockReferenceInEveryMusicFormat) {
    EXPECT_EQ(store::musicToken("$prom_app.Replicas.PROM_ADMIN$x-0000000012"), 12);  // 3.0, ZooKeeper
    EXPECT_EQ(store::musicToken("$prom_app.Replicas.PROM_ADMIN$345"), 345);          // 3.2, Cassandra
    EXPECT_EQ(store::musicToken(""), 0);
    EXPECT_EQ(store::musicToken("No lock holder!"), 0);
}

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

// Issue 9 item 6: nesting ~19,000 deep crashed prom (recursion in the tree builder).
TEST(JsonLimits, RefusesDeepNestingWithoutRecursing) {
    for (std::size_t depth : {65u, 1000u, 19000u, 200000u}) {
        std::string doc = std::string(depth, '[') + std::string(depth, ']');
        auto r = json::parse(doc);
        ASSERT_TRUE(std::holds_alternative<json::SyntaxError>(r)) << depth;
        EXPECT_NE(std::get<json::SyntaxError>(r).message.find("nested deeper"), std::string::npos);
        EXPECT_EQ(std::get<json::SyntaxError>(r).offset, 64u);  // where the 65th level opens
    }
    std::string objects;
    for (int i = 0; i < 20000; ++i) objects += "{\"a\":";
    objects += "1" + std::string(20000, '}');
    EXPECT_TRUE(std::holds_alternative<json::SyntaxError>(json::parse(objects)));
    std::string ok = std::string(64, '[') + std::string(64, ']');
    EXPECT_TRUE(std::holds_alternative<json::Value>(json::parse(ok)));
}

TEST(JsonLimits, BracketsInsideStringsDoNotCount) {
    std::string doc = "{\"a\":\"" + std::string(5000, '[') + "\\\"" + std::string(5000, '{') + "\"}";
    EXPECT_TRUE(std::holds_alternative<json::Value>(json::parse(doc, json::kStoreLimits)));
}

// Issue 9 item 8: a 4 MiB reply of 0,0,0,... cost 250-315 MB and stalled the loop > 1 s.
TEST(JsonLimits, RefusesTooManyValuesBeforeBuildingAnything) {
    std::string doc = "[0";
    for (int i = 0; i < 2'000'000; ++i) doc += ",0";
    doc += "]";
    auto t0 = std::chrono::steady_clock::now();
    auto r = json::parse(doc);
    auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_TRUE(std::holds_alternative<json::SyntaxError>(r));
    EXPECT_NE(std::get<json::SyntaxError>(r).message.find("more than"), std::string::npos);
    EXPECT_LT(took, std::chrono::milliseconds(200));
    // A store reply is held to tighter bounds: 1 MiB and 20,000 values.
    EXPECT_TRUE(std::holds_alternative<json::SyntaxError>(json::parse(std::string(2u << 20, ' ') + "{}", json::kStoreLimits)));
    std::string many = "[0";
    for (int i = 0; i < 30000; ++i) many += ",0";
    many += "]";
    EXPECT_TRUE(std::holds_alternative<json::SyntaxError>(json::parse(many, json::kStoreLimits)));
    EXPECT_TRUE(std::holds_alternative<json::Value>(json::parse(many)));
}

TEST(EtcdKv, SanitizesAHolderWithInvalidUtf8AndControlCharacters) {
    // "\xff\x1b[2J" + "0>" + "\xc3" (a multibyte character cut short) as written by anyone
    // with write access to the prefix.
    auto r = json::parse(R"({"create_revision":"9","value":")" + base64::encode("\xff\x1b[2J0>\xc3") + "\"}");
    auto k = store::parseLeaderKv(std::get<json::Value>(r));
    EXPECT_EQ(k.holder, "\xEF\xBF\xBD\\x1b[2J0");
    EXPECT_EQ(k.handoverTo, "\xEF\xBF\xBD");
    auto big = json::parse(R"({"create_revision":"9","value":")" + base64::encode(std::string(100000, 'x')) + "\"}");
    EXPECT_LE(store::parseLeaderKv(std::get<json::Value>(big)).holder.size(), 260u);
}

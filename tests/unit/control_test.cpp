// The store's operator records (store/control.hpp): what prom writes is read back whole, and
// what anyone else may have written (an older prom, garbage, invalid UTF-8) never becomes a
// request prom obeys or text that breaks D-Bus or a terminal.
#include <gtest/gtest.h>

#include "common/text.hpp"
#include "daemon/store_driver.hpp"
#include "store/control.hpp"

using namespace prom;
using namespace prom::store;

TEST(MemberRecord, RoundTripsEveryField) {
    MemberInfo m{"2", "node-b", 4242, "active", 57, 1795858950461600ull, "1.1.0", "fast", true, "ensure-active failed", 17};
    EXPECT_EQ(decodeMember("2", encodeMember(m)), m);
}

TEST(MemberRecord, AnOlderPromsBareIdOrGarbageGivesOnlyTheId) {
    for (std::string v : {"2", "", "{", "[1,2]", "{\"role\":{\"deep\":[[[[[[1]]]]]]}}"}) {
        MemberInfo m = decodeMember("2", v);
        EXPECT_EQ(m.id, "2") << v;
        EXPECT_EQ(m.role, "") << v;
        EXPECT_EQ(m.pid, 0) << v;
    }
}

TEST(MemberRecord, TextFromTheStoreIsSanitized) {
    MemberInfo m = decodeMember("2\xff", "{\"host\":\"a\\u001b[2Jb\",\"last_error\":\"\\ud800x\",\"role\":\"act\\u0085ive\"}");
    for (const auto& s : {m.id, m.host, m.lastError, m.role}) {
        EXPECT_TRUE(text::isValidUtf8(s)) << s;
        EXPECT_EQ(s.find('\x1b'), std::string::npos) << s;
    }
}

TEST(ControlRequest, RoundTripsAndKeepsItsAddress) {
    ControlRequest r{"abc", ControlOp::Switchover, "2", 57, "root@node-a", 0, 0};
    auto back = decodeRequest("abc", encodeRequest(r));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->op, ControlOp::Switchover);
    EXPECT_EQ(back->target, "2");
    EXPECT_EQ(back->token, 57);
    EXPECT_EQ(back->by, "root@node-a");
}

TEST(ControlRequest, ASwitchoverOrResignWithoutATokenOrAnUnknownOpIsNoRequest) {
    // Token 0 is never held: a request for it would be obeyed by nobody, or by a bug.
    EXPECT_FALSE(decodeRequest("a", "{\"op\":\"resign\"}"));
    EXPECT_FALSE(decodeRequest("a", "{\"op\":\"switchover\",\"token\":0}"));
    EXPECT_FALSE(decodeRequest("a", "{\"op\":\"switchover\",\"token\":-3}"));
    EXPECT_FALSE(decodeRequest("a", "{\"op\":\"demote-everyone\",\"token\":5}"));
    EXPECT_FALSE(decodeRequest("a", "{\"op\":\"pause\"}"));  // pause whom?
    EXPECT_FALSE(decodeRequest("a", "not json"));
    EXPECT_TRUE(decodeRequest("a", "{\"op\":\"resign\",\"token\":\"5\"}"));  // etcd-style int64 string
}

TEST(ControlKeys, ThePauseKeyPausesEvenWhenItsValueIsUnreadable) {
    ControlState s;
    EXPECT_TRUE(applyControlKey(s, "control/pause", std::string("\xff garbage"), 0, 7));
    EXPECT_TRUE(s.pause.paused);
    EXPECT_TRUE(applyControlKey(s, "control/pause", std::nullopt, 0, 8));
    EXPECT_FALSE(s.pause.paused);
}

TEST(ControlKeys, RequestsComeAndGoWithTheirKeysAndCarryLeaseAndRevision) {
    ControlState s;
    ASSERT_TRUE(applyControlKey(s, "control/requests/r1", std::string("{\"op\":\"resign\",\"token\":9}"), 77, 12));
    ASSERT_EQ(s.requests.count("r1"), 1u);
    EXPECT_EQ(s.requests["r1"].lease, 77);
    EXPECT_EQ(s.requests["r1"].revision, 12);
    // Rewritten as garbage: no longer a request.
    ASSERT_TRUE(applyControlKey(s, "control/requests/r1", std::string("{}"), 77, 13));
    EXPECT_EQ(s.requests.count("r1"), 0u);
    ASSERT_TRUE(applyControlKey(s, "control/replies/r1", std::string("{\"ok\":false,\"message\":\"no\"}"), 77, 14));
    EXPECT_FALSE(s.replies["r1"].ok);
    EXPECT_FALSE(applyControlKey(s, "members/1", std::string("{}"), 0, 15));
    EXPECT_FALSE(applyControlKey(s, "control/requests/", std::string("{}"), 0, 16));
}

TEST(ControlReply, CarriesTheRefusalsErrorNameSoPromctlExitsAsOverDbus) {
    ControlReply r{"r1", false, "replica 1 is passive, not active", "org.prom.Prom1.Error.NotActive"};
    ControlReply back = decodeReply("r1", encodeReply(r));
    EXPECT_FALSE(back.ok);
    EXPECT_EQ(back.message, r.message);
    EXPECT_EQ(back.error, "org.prom.Prom1.Error.NotActive");
}

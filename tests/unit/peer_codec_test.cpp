// Fast-mode peer datagrams: authentication, bounds and replay protection (src/peer/codec.hpp).
#include <gtest/gtest.h>

#include "peer/codec.hpp"

using namespace prom::peer;

namespace {

const std::string kKey = "0123456789abcdef0123456789abcdef";

Message heartbeat(std::uint64_t counter = 1) {
    Message m;
    m.type = Message::Type::Heartbeat;
    m.from = "node-2";
    m.boot = BootId{1, 2, 3};
    m.counter = counter;
    m.epoch = 42;
    m.seq = 7;
    m.withdrawn = 41;
    return m;
}

}  // namespace

TEST(PeerCodec, ADatagramDecodesToWhatWasEncoded) {
    Message ack = heartbeat();
    ack.type = Message::Type::Ack;
    ack.supported = true;
    ack.ackBoot = BootId{9};
    for (const Message& m : {heartbeat(), ack}) {
        auto bytes = encode(m, kKey);
        EXPECT_EQ(bytes.size(), kDatagramSize);
        auto back = decode(bytes, kKey);
        ASSERT_TRUE(back.ok()) << back.error().message;
        EXPECT_EQ(*back, m);
    }
}

TEST(PeerCodec, AForgedDatagramIsRejected) {
    auto bytes = encode(heartbeat(), "another key of the right length!");
    auto r = decode(bytes, kKey);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("HMAC"), std::string::npos);
}

TEST(PeerCodec, AnyAlteredByteIsRejected) {
    auto good = encode(heartbeat(), kKey);
    for (std::size_t i = 0; i < good.size(); ++i) {
        auto bad = good;
        bad[i] ^= 0x01;
        EXPECT_FALSE(decode(bad, kKey).ok()) << "byte " << i;
    }
}

TEST(PeerCodec, WrongSizesAreRejectedBeforeAnythingIsRead) {
    auto good = encode(heartbeat(), kKey);
    EXPECT_FALSE(decode(std::span(good.data(), good.size() - 1), kKey).ok());
    good.push_back(0);
    EXPECT_FALSE(decode(good, kKey).ok());
    EXPECT_FALSE(decode({}, kKey).ok());
}

TEST(PeerCodec, ReplicaIdsLongerThan32BytesCannotBeSent) {
    Message m = heartbeat();
    m.from = std::string(33, 'x');
    EXPECT_THROW(encode(m, kKey), std::invalid_argument);
}

TEST(ReplayGuard, ACounterMustGrowWithinOneRun) {
    ReplayGuard g;
    EXPECT_TRUE(g.accept(heartbeat(5)));
    EXPECT_FALSE(g.accept(heartbeat(5))) << "the same datagram twice";
    EXPECT_FALSE(g.accept(heartbeat(4)));
    EXPECT_TRUE(g.accept(heartbeat(6)));
}

TEST(ReplayGuard, ARestartedPeerIsAcceptedButItsEarlierRunNeverAgain) {
    ReplayGuard g;
    EXPECT_TRUE(g.accept(heartbeat(100)));
    Message next = heartbeat(1);
    next.boot = BootId{7, 7, 7};
    EXPECT_TRUE(g.accept(next)) << "a new run starts its counter again";
    EXPECT_FALSE(g.accept(heartbeat(101))) << "a replay of the earlier run";
}

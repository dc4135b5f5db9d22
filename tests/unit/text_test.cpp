#include "common/text.hpp"

#include <gtest/gtest.h>

using namespace prom;

TEST(Utf8, AcceptsWellFormedAndRejectsEveryIllFormedKind) {
    EXPECT_TRUE(text::isValidUtf8("plain ascii"));
    EXPECT_TRUE(text::isValidUtf8("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    EXPECT_FALSE(text::isValidUtf8("\xC3"));              // cut in the middle of a character
    EXPECT_FALSE(text::isValidUtf8("\xC0\xAF"));          // overlong '/'
    EXPECT_FALSE(text::isValidUtf8("\xE0\x80\xAF"));      // overlong, 3 bytes
    EXPECT_FALSE(text::isValidUtf8("\xED\xA0\x80"));      // UTF-16 surrogate
    EXPECT_FALSE(text::isValidUtf8("\xF4\x90\x80\x80"));  // past U+10FFFF
    EXPECT_FALSE(text::isValidUtf8("\xFF"));
    EXPECT_FALSE(text::isValidUtf8("\x80"));
}

TEST(Sanitize, ProducesValidUtf8WithoutControlCharacters) {
    EXPECT_EQ(text::sanitize("ok"), "ok");
    EXPECT_EQ(text::sanitize("a\nb\tc\x1b[31m\x7f"), "a\\nb\\tc\\x1b[31m\\x7f");
    EXPECT_EQ(text::sanitize(std::string("a\0b", 3)), "a\\x00b");
    EXPECT_EQ(text::sanitize("\xC2\x9B"
                             "2J"),
              "\\u009b2J");  // C1 CSI
    EXPECT_EQ(text::sanitize("x\xC3"), "x\xEF\xBF\xBD");
    EXPECT_EQ(text::sanitize("\xC3\xA9"), "\xC3\xA9");
    for (int b = 0; b < 256; ++b) {
        std::string s = text::sanitize(std::string(1, static_cast<char>(b)) + "\xE2\x82");
        EXPECT_TRUE(text::isValidUtf8(s)) << b;
        for (unsigned char c : s) EXPECT_TRUE(c >= 0x20 && c != 0x7F) << b;
    }
}

// Issue 9 item 5: an error body cut at 300 bytes in the middle of a multibyte character made
// PropertiesChanged throw.
TEST(Sanitize, CutsOnACharacterBoundary) {
    std::string euros;
    for (int i = 0; i < 200; ++i) euros += "\xE2\x82\xAC";
    std::string s = text::sanitize(euros, 100);
    EXPECT_TRUE(text::isValidUtf8(s));
    EXPECT_LE(s.size(), 103u);
    EXPECT_EQ(s.substr(s.size() - 3), "...");
    std::string e = text::excerpt("  \n" + euros + "\n", 50);
    EXPECT_TRUE(text::isValidUtf8(e));
    EXPECT_LE(e.size(), 53u);
}

TEST(RedactUrl, DropsUserInfo) {
    EXPECT_EQ(text::redactUrl("http://root:s3cret@10.0.0.1:2379/v3/kv"), "http://10.0.0.1:2379/v3/kv");
    EXPECT_EQ(text::redactUrl("http://127.0.0.1:2379"), "http://127.0.0.1:2379");
    EXPECT_EQ(text::redactUrl("https://u@h/x@y"), "https://h/x@y");
}

// Config fuzz (issue 9): mutated TOML and PROM JSON files through config::load, as
// --check-config and the daemon read them. Each must load (exit 0) or be refused with
// PATH:LINE:COLUMN diagnostics (exit 78), within 2 s, and without a crash (this matters most in
// the sanitizer build). The mutator is seeded: a failing case is replayed by its index.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "config/config.hpp"

using namespace prom;

namespace {

std::string readFile(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct Seed {
    std::string name;  // the extension chooses the format
    std::string text;
};

std::vector<Seed> seeds() {
    const std::string d = PROM_SOURCE_DIR;
    return {{"a.conf", readFile(d + "/conf/prom.conf")},
            {"b.conf", readFile(d + "/tests/data/prom-sample-equivalent.conf")},
            {"c.json", readFile(d + "/tests/data/prom-sample.json")},
            {"d.json", readFile(d + "/tests/data/prom-readme-example.json")}};
}

// A file that expands %i in many actions for many replicas (issue 9 item 8: > 60 s, 1.5 GB).
std::string percentIBomb(std::size_t replicas, std::size_t actionBytes) {
    std::string ids;
    for (std::size_t i = 0; i < replicas; ++i) ids += (i ? ",\"" : "\"") + std::to_string(i) + "\"";
    std::string action;
    while (action.size() < actionBytes) action += "echo %i%i%i ";
    return "app-name = \"a\"\nreplicas = [" + ids + "]\n[actions]\nensure-active = \"" + action +
           "\"\nensure-passive = \"" + action + "\"\nrestart-prom = \"" + action + "\"\n";
}

class Mutator {
public:
    explicit Mutator(std::uint32_t seed) : m_r(seed) {}
    std::size_t pick(std::size_t n) { return n ? std::uniform_int_distribution<std::size_t>(0, n - 1)(m_r) : 0; }

    std::string mutate(std::string s, bool json) {
        int rounds = 1 + static_cast<int>(pick(4));
        for (int k = 0; k < rounds; ++k) s = once(std::move(s), json);
        return s;
    }

private:
    std::string once(std::string s, bool json) {
        const std::size_t at = pick(s.size() + 1);
        static const char* bytes[] = {
            "\0", "\xff", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x1b[2J", "\n", "\"", "[", "{", "}", "]", "=",
            ",",  "#",    "\\",   "'''",          "\"\"\"",           "%i",      "\r"};
        switch (pick(10)) {
            case 0:  // flip a byte
                if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
                return s;
            case 1: {  // insert a troublesome byte sequence
                const char* b = bytes[pick(std::size(bytes))];
                return s.insert(at, std::string(b, b[0] ? std::strlen(b) : 1));
            }
            case 2:  // delete a range
                return s.erase(at, pick(64));
            case 3: {  // duplicate a range
                std::string part = s.substr(at, pick(200));
                return s.insert(pick(s.size() + 1), part);
            }
            case 4:  // truncate
                return s.substr(0, at);
            case 5: {                                                  // a depth bomb as a value
                std::size_t depth = std::size_t(1) << (4 + pick(15));  // 16 .. 256 Ki levels
                std::string open = json ? (pick(2) ? "[" : "{\"a\":") : (pick(2) ? "[" : "{a=");
                std::string bomb;
                for (std::size_t i = 0; i < depth; ++i) bomb += open;
                std::string key = json ? "\"x\":" : "\nx = ";
                if (json) {
                    auto brace = s.find('{');
                    return brace == std::string::npos ? bomb : s.insert(brace + 1, key + bomb);
                }
                return s.insert(at, key + bomb + "\n");
            }
            case 6: {  // %i amplification
                std::string ids;
                std::size_t n = 100 + pick(5000);
                for (std::size_t i = 0; i < n; ++i) ids += (i ? ",\"r" : "\"r") + std::to_string(i) + "\"";
                std::string a(2 * (1000 + pick(50000)), '%');
                for (std::size_t i = 1; i < a.size(); i += 2) a[i] = 'i';
                if (json) {
                    auto brace = s.find('{');
                    if (brace == std::string::npos) return s;
                    return s.insert(brace + 1, "\"replica-id-list\":[" + ids + "],\"ensure-active\":\"" + a + "\",");
                }
                return "replicas = [" + ids + "]\n" + s + "\n[actions]\nensure-active = \"" + a + "\"\n";
            }
            case 7: {  // a long line, a long key
                std::string filler(1 + pick(200000), static_cast<char>('a' + pick(26)));
                return s.insert(at, filler);
            }
            case 8: {  // swap two lines
                std::vector<std::string> lines;
                std::istringstream in(s);
                for (std::string l; std::getline(in, l);) lines.push_back(l);
                if (lines.size() > 1) std::swap(lines[pick(lines.size())], lines[pick(lines.size())]);
                std::string out;
                for (auto& l : lines) out += l + "\n";
                return out;
            }
            default: {  // a number out of every range
                static const char* nums[] = {
                    "9223372036854775808",    "-9223372036854775809", "1e400", "-0", "0x7fffffff", "nan", "inf",
                    "99999999999999999999999"};
                auto eq = s.find(json ? ':' : '=', at);
                if (eq == std::string::npos) return s;
                auto end = s.find_first_of(json ? ",}" : "\n", eq);
                return s.replace(eq + 1, end == std::string::npos ? 0 : end - eq - 1,
                                 std::string(" ") + nums[pick(std::size(nums))]);
            }
        }
    }
    std::mt19937 m_r;
};

// "PATH:LINE:COLUMN: message" with LINE and COLUMN positive decimals (no std::regex: GCC 12
// warns inside it in the sanitizer build).
bool located(const std::string& line, const std::string& path) {
    if (line.rfind(path + ":", 0) != 0) return false;
    std::size_t i = path.size() + 1;
    for (int field = 0; field < 2; ++field) {
        std::size_t digits = 0;
        while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i, ++digits;
        if (!digits || i >= line.size() || line[i] != ':') return false;
        ++i;
    }
    return i + 1 < line.size() && line[i] == ' ';
}

void expectExitZeroOr78(const std::string& path, const config::LoadResult& r, const std::string& what) {
    if (r.config) {
        EXPECT_FALSE(r.hasErrors()) << what;
        return;
    }
    ASSERT_FALSE(r.diagnostics.empty()) << what << ": refused without saying why";
    for (const auto& d : r.diagnostics) {
        std::string line = d.format();
        EXPECT_TRUE(located(line, path)) << what << ": " << line.substr(0, 200);
    }
}

std::string tempPath(const std::string& name) {
    return ::testing::TempDir() + "/prom-fuzz-" + std::to_string(getpid()) + "-" + name;
}

}  // namespace

TEST(ConfigFuzz, MutatedFilesLoadOrAreRefusedWithALocationWithinTwoSeconds) {
    const auto all = seeds();
    for (const auto& s : all) ASSERT_FALSE(s.text.empty()) << s.name;
    constexpr int kCases = 320;
    Mutator m(20261128);
    int refused = 0;
    for (int i = 0; i < kCases; ++i) {
        const Seed& seed = all[static_cast<std::size_t>(i) % all.size()];
        const bool json = seed.name.ends_with(".json");
        std::string text = m.mutate(seed.text, json);
        std::string path = tempPath(std::to_string(i) + "-" + seed.name);
        {
            std::ofstream out(path, std::ios::binary);
            out << text;
        }
        auto t0 = std::chrono::steady_clock::now();
        auto r = config::load(path, "");
        auto took = std::chrono::steady_clock::now() - t0;
        std::string what =
            "case " + std::to_string(i) + " (" + seed.name + ", " + std::to_string(text.size()) + " bytes)";
        EXPECT_LT(took, std::chrono::seconds(2)) << what;
        expectExitZeroOr78(path, r, what);
        if (!r.config) ++refused;
        unlink(path.c_str());
    }
    // The mutations must exercise the error paths, not only harmless edits.
    EXPECT_GT(refused, kCases / 3);
}

TEST(ConfigLimits, PercentIExpansionIsRefusedQuicklyInsteadOfGrowingToGigabytes) {
    // TOML: [actions] are defaults copied to every replica (PROM JSON has one action per
    // replica, ensure-active-ID, so its expansion is linear).
    {
        std::string text = percentIBomb(20000, 200000);  // ~700 KB, like the issue's file
        ASSERT_LT(text.size(), 1u << 20);
        std::string path = tempPath("bomb.conf");
        {
            std::ofstream out(path, std::ios::binary);
            out << text;
        }
        auto t0 = std::chrono::steady_clock::now();
        auto r = config::load(path, "");
        auto took = std::chrono::steady_clock::now() - t0;
        EXPECT_LT(took, std::chrono::seconds(2));
        ASSERT_FALSE(r.config);
        bool said = false;
        for (const auto& d : r.diagnostics) said |= d.message.find("%i expanded") != std::string::npos;
        EXPECT_TRUE(said) << r.diagnostics.front().format().substr(0, 300);
        unlink(path.c_str());
    }
}

TEST(ConfigLimits, ManyReplicasWithShortActionsStillLoad) {
    std::string text = percentIBomb(200, 40);
    std::string path = tempPath("many.conf");
    {
        std::ofstream out(path, std::ios::binary);
        out << text;
    }
    auto r = config::load(path, "");
    EXPECT_TRUE(r.config) << (r.diagnostics.empty() ? "" : r.diagnostics.front().format());
    unlink(path.c_str());
}

TEST(ConfigLimits, JsonDepthBombIsALocatedErrorNotACrash) {
    std::string text = "{\"app-name\":" + std::string(100000, '[') + "}";
    std::string path = tempPath("deep.json");
    {
        std::ofstream out(path, std::ios::binary);
        out << text;
    }
    auto r = config::load(path, "");
    ASSERT_FALSE(r.config);
    EXPECT_EQ(r.diagnostics.front().format().rfind(path + ":1:", 0), 0u) << r.diagnostics.front().format();
    unlink(path.c_str());
}

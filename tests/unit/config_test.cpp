#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "config/config.hpp"

using namespace prom::config;

namespace {

const std::string kActions = R"(
[actions]
ensure-active = "/bin/true %i"
ensure-passive = ["/bin/true", "%i"]
)";

LoadResult toml(const std::string& text, const std::string& id = "") { return loadText("test.conf", text, id); }
LoadResult json(const std::string& text, const std::string& id = "") { return loadText("config.json", text, id); }

std::string errors(const LoadResult& r) {
    std::string s;
    for (const auto& d : r.diagnostics) s += d.format() + "\n";
    return s;
}

// Every bad input must give a located error, never a crash.
void expectError(const LoadResult& r, const std::string& needle, int line = 0, int column = 0) {
    ASSERT_FALSE(r.config) << "accepted; diagnostics:\n" << errors(r);
    bool found = false;
    for (const auto& d : r.diagnostics) {
        if (d.severity != Diagnostic::Severity::Error || d.format().find(needle) == std::string::npos) continue;
        found = true;
        if (line) {
            EXPECT_EQ(d.at.line, line) << d.format();
        }
        if (column) {
            EXPECT_EQ(d.at.column, column) << d.format();
        }
    }
    EXPECT_TRUE(found) << "no error containing '" << needle << "' in:\n" << errors(r);
}

std::string tempDir() {
    char t[] = "/tmp/prom-config-test-XXXXXX";
    return mkdtemp(t);
}

std::string slurp(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

const std::string kMinimal = "app-name = \"app\"\nreplicas = [\"0\", \"1\"]\n" + kActions;

}  // namespace

// The sample's action program (/usr/lib/votingapp/ensure) does not exist on a test host: the
// program check is tested on its own below, the rest of the sample here.
std::string withProgram(std::string text, const std::string& program) {
    for (std::size_t pos = 0; (pos = text.find("/usr/lib/votingapp/ensure", pos)) != std::string::npos; pos += program.size())
        text.replace(pos, 25, program);
    return text;
}

TEST(ShippedSample, Validates) {
    std::string path = std::string(PROM_SOURCE_DIR) + "/conf/prom.conf";
    auto r = loadText(path, withProgram(slurp(path), "/bin/true"), "0");
    ASSERT_TRUE(r.config) << errors(r);
    EXPECT_EQ(r.config->appName, "votingapp");
    EXPECT_EQ(r.config->replicas.size(), 3u);
    EXPECT_EQ(r.config->settingsOf("1").priority, 10);
    EXPECT_EQ(r.config->settingsOf("2").ensureActive.command, "/bin/true 2 active");
}

TEST(TomlConfig, AppliesDesignDefaults) {
    auto r = toml(kMinimal, "0");
    ASSERT_TRUE(r.config) << errors(r);
    const Config& c = *r.config;
    EXPECT_EQ(c.store.backend, Backend::Etcd);
    EXPECT_EQ(c.store.endpoints, std::vector<std::string>{"http://127.0.0.1:2379"});
    EXPECT_EQ(c.store.prefix, "/prom");
    EXPECT_EQ(c.store.connectTimeout, Millis(1000));
    EXPECT_EQ(c.election.timeout, Millis(5000));
    EXPECT_EQ(c.election.monitorInterval, Millis(1000));
    EXPECT_EQ(c.election.demoteMargin, Millis(1250));
    EXPECT_FALSE(c.election.startPassive);
    EXPECT_EQ(c.actions.retryAttempts, 3);
    EXPECT_EQ(c.actions.retryBackoff, Millis(1000));
    EXPECT_EQ(c.actions.timeout, Millis(30000));
}

TEST(TomlConfig, DemoteMarginDefaultsToAQuarterOfTheTimeout) {
    auto r = toml(kMinimal + "[election]\ntimeout-ms = 8000\n");
    ASSERT_TRUE(r.config) << errors(r);
    EXPECT_EQ(r.config->election.demoteMargin, Millis(2000));
}

TEST(TomlConfig, ExpandsPercentIAndAppliesReplicaOverrides) {
    auto r = toml(kMinimal + "[replica.1]\nensure-active = { start-unit = \"app@%i.service\" }\npriority = 5\n");
    ASSERT_TRUE(r.config) << errors(r);
    const auto& r0 = r.config->settingsOf("0");
    EXPECT_EQ(r0.ensureActive.kind, Action::Kind::Shell);
    EXPECT_EQ(r0.ensureActive.command, "/bin/true 0");
    EXPECT_EQ(r0.ensurePassive.argv, (std::vector<std::string>{"/bin/true", "0"}));
    const auto& r1 = r.config->settingsOf("1");
    EXPECT_EQ(r1.ensureActive.kind, Action::Kind::StartUnit);
    EXPECT_EQ(r1.ensureActive.unit, "app@1.service");
    EXPECT_EQ(r1.ensurePassive.argv, (std::vector<std::string>{"/bin/true", "1"}));
    EXPECT_EQ(r1.priority, 5);
}

TEST(TomlConfig, AcceptsStopUnitTables) {
    auto r = toml("app-name = \"a\"\nreplicas = [\"x\"]\n[actions]\nensure-active = { start-unit = \"a.service\" }\n"
                  "ensure-passive = { stop-unit = \"a.service\" }\n");
    ASSERT_TRUE(r.config) << errors(r);
    EXPECT_EQ(r.config->settingsOf("x").ensurePassive.kind, Action::Kind::StopUnit);
}

TEST(PromJson, MapsToTheSameConfigAsTheEquivalentToml) {
    // The samples name programs of a PROM deployment that this host does not have.
    auto fromJson = load(std::string(PROM_SOURCE_DIR) + "/tests/data/prom-sample.json", "0", HostChecks::Skip);
    auto fromToml = load(std::string(PROM_SOURCE_DIR) + "/tests/data/prom-sample-equivalent.conf", "0", HostChecks::Skip);
    ASSERT_TRUE(fromJson.config) << errors(fromJson);
    ASSERT_TRUE(fromToml.config) << errors(fromToml);
    EXPECT_TRUE(*fromJson.config == *fromToml.config);
    EXPECT_EQ(fromJson.config->store.backend, Backend::Music);
    EXPECT_EQ(fromJson.config->store.connectTimeout, Millis(4000));
}

TEST(PromJson, ReadsScalarsGivenAsStringsOrNumbers) {
    std::string base = R"({"app-name":"a","replica-id-list":["0"],"music-location":["h"],
        "ensure-active-0":"/bin/true","ensure-passive-0":"/bin/true",)";
    auto a = json(base + R"("prom-timeout":"6000","no-of-retry-attempts":"2"})");
    auto b = json(base + R"("prom-timeout":6000,"no-of-retry-attempts":2})");
    ASSERT_TRUE(a.config) << errors(a);
    ASSERT_TRUE(b.config) << errors(b);
    EXPECT_TRUE(*a.config == *b.config);
    EXPECT_EQ(a.config->election.timeout, Millis(6000));
    EXPECT_EQ(a.config->actions.retryAttempts, 2);
    EXPECT_EQ(a.config->actions.retryBackoff, Millis(0));  // PROM's default: immediate retry
}

TEST(PromJson, SplitsCommandsOnSpacesLikePromWithoutAShell) {
    auto r = loadText("config.json", R"({"app-name":"a","replica-id-list":["0"],"music-location":["h"],"prom-timeout":5000,
        "no-of-retry-attempts":1,"ensure-active-0":"/x/ensure  0 active","ensure-passive-0":"/x/ensure 0 passive"})", "", HostChecks::Skip);
    ASSERT_TRUE(r.config) << errors(r);
    EXPECT_EQ(r.config->settingsOf("0").ensureActive.argv, (std::vector<std::string>{"/x/ensure", "0", "active"}));
}

TEST(PromJson, DirectoryMeansDirConfigJson) {
    std::string dir = tempDir();
    std::ofstream(dir + "/config.json") << slurp(std::string(PROM_SOURCE_DIR) + "/tests/data/prom-sample.json");
    auto r = load(dir, "1", HostChecks::Skip);
    ASSERT_TRUE(r.config) << errors(r);
    EXPECT_EQ(r.config->path, dir + "/config.json");
}

// ---- bad input: every one a located message, exit 78 from the CLI ----

TEST(BadConfig, EmptyFile) { expectError(toml(""), "test.conf:1:1: the file is empty"); }
TEST(BadConfig, WhitespaceOnlyFile) { expectError(toml("  \n\t\n"), "the file is empty"); }
TEST(BadConfig, BinaryGarbageWithNul) { expectError(toml(std::string("app-name = 1\n\x7f" "ELF\0\0", 18)), "NUL byte", 2, 5); }

TEST(BadConfig, RandomBytesNeverCrash) {
    std::mt19937 rng(42);
    for (int i = 0; i < 200; ++i) {
        std::string s(64 + i, '\0');
        for (auto& ch : s) ch = static_cast<char>(rng() % 255 + 1);
        auto r = toml(s);
        EXPECT_FALSE(r.config);
        ASSERT_FALSE(r.diagnostics.empty());
        auto j = json("{" + s);
        EXPECT_FALSE(j.config);
    }
}

TEST(BadConfig, TenMegabyteFileIsRefusedWithItsSize) {
    std::string dir = tempDir();
    std::string path = dir + "/big.conf";
    std::ofstream(path) << std::string(10 << 20, '#');
    auto r = load(path);
    expectError(r, "file is 10485760 bytes; a configuration may be at most 1048576 bytes");
}

TEST(BadConfig, DuplicateTomlKey) { expectError(toml(kMinimal + "[store]\nprefix = \"/a\"\nprefix = \"/b\"\n"), "cannot redefine existing string 'prefix'", 9); }

TEST(BadConfig, DuplicateJsonKeyNamesBothPlaces) {
    expectError(json("{\n\"app-name\":\"a\",\n\"app-name\":\"b\"}"), "duplicate key \"app-name\" (first given at line 2, column 1)", 3, 1);
}

TEST(BadConfig, StringWhereIntegerExpected) {
    expectError(toml(kMinimal + "[election]\ntimeout-ms = \"5000\"\n"), "election.timeout-ms must be an integer, not a string", 8, 14);
}

TEST(BadConfig, IntegerWhereStringExpected) { expectError(toml("app-name = 5\n"), "app-name must be a string, not an integer", 1, 12); }

TEST(BadConfig, NegativeDuration) {
    expectError(toml(kMinimal + "[election]\nmonitor-interval-ms = -5\n"), "election.monitor-interval-ms = -5 is out of range", 8, 23);
}

TEST(BadConfig, OverflowingInteger) { expectError(toml(kMinimal + "[election]\ntimeout-ms = 99999999999999999999\n"), "test.conf:8:"); }

TEST(BadConfig, DuplicateTableHeader) { expectError(toml(kMinimal + "[actions]\n"), "actions", 7); }

TEST(BadConfig, HugeDuration) {
    expectError(toml("app-name = \"a\"\nreplicas = [\"0\"]\n[election]\ntimeout-ms = 86400001\n" + kActions),
                "election.timeout-ms = 86400001 is out of range [1, 86400000]", 4, 14);
}

TEST(BadConfig, MissingActions) {
    expectError(toml("app-name = \"a\"\nreplicas = [\"0\"]\n"), "replica \"0\" has no ensure-active action");
}

TEST(BadConfig, MissingEnsurePassiveForOneJsonReplica) {
    expectError(json(R"({"app-name":"a","replica-id-list":["0","1"],"music-location":["h"],"prom-timeout":5000,
        "no-of-retry-attempts":1,"ensure-active-0":"a","ensure-passive-0":"b","ensure-active-1":"c"})"),
                "replica \"1\" has no ensure-passive action (\"ensure-passive-1\")");
}

TEST(BadConfig, UnknownBackend) {
    expectError(toml(kMinimal + "[store]\nbackend = \"zookeeper\"\n"), "store.backend = \"zookeeper\" is unknown", 8, 11);
}

TEST(BadConfig, UnknownTopLevelKey) { expectError(toml("foo = 1\n" + kMinimal), "unknown key 'foo'", 1, 7); }

TEST(BadConfig, UnknownKeyInSection) {
    expectError(toml(kMinimal + "[election]\ntimeout = 5000\n"), "unknown key 'election.timeout'", 8, 11);
}

TEST(BadConfig, UnknownJsonKey) { expectError(json("{\"app-name\":\"a\",\n  \"prom-timout\":5000}"), "unknown key \"prom-timout\"", 2, 3); }

TEST(BadConfig, DirectoryWithoutConfigJson) { expectError(load(tempDir()), "is a directory without config.json"); }

TEST(BadConfig, MissingFile) { expectError(load("/nonexistent/prom.conf"), "/nonexistent/prom.conf:1:1: cannot read: No such file"); }

TEST(BadConfig, PromReadmeExampleIsInvalidJsonAtTheMissingComma) {
    auto r = load(std::string(PROM_SOURCE_DIR) + "/tests/data/prom-readme-example.json");
    expectError(r, "missing or superfluous commas", 24, 7);
}

TEST(BadConfig, TruncatedJson) { expectError(json("{\"app-name\":\"a\",\"replica-id-list\":[\"0\""), "config.json:1:"); }

TEST(BadConfig, JsonTopLevelIsNotAnObject) { expectError(loadText("config.json", "[1,2]"), "must be a JSON object"); }

TEST(BadConfig, OwnIdNotInReplicas) { expectError(toml(kMinimal, "7"), "this replica's id \"7\" (--id) is not in replicas", 2, 12); }

TEST(BadConfig, DuplicateReplicaIds) {
    expectError(toml("app-name = \"a\"\nreplicas = [\"0\", \"0\"]\n" + kActions), "replica id \"0\" is listed twice");
}

TEST(BadConfig, EmptyReplicaList) { expectError(toml("app-name = \"a\"\nreplicas = []\n" + kActions), "must list at least one replica"); }

TEST(BadConfig, MonitorIntervalNotShorterThanTimeout) {
    expectError(toml(kMinimal + "[election]\nmonitor-interval-ms = 5000\n"),
                "election.monitor-interval-ms (5000 ms) must be shorter than election.timeout-ms (5000 ms, the default)", 8, 23);
}

TEST(BadConfig, DemoteMarginThatWouldDemoteAHealthyActive) {
    expectError(toml(kMinimal + "[election]\ndemote-margin-ms = 4000\n"), "must be shorter than two thirds of the lease TTL");
}

TEST(BadConfig, PromJsonWithoutPromTimeout) {
    expectError(json(R"({"app-name":"a","replica-id-list":["0"],"music-location":["h"],"no-of-retry-attempts":1,
        "ensure-active-0":"a","ensure-passive-0":"b"})"),
                "missing \"prom-timeout\"");
}

TEST(BadConfig, PromJsonNonNumericTimeout) {
    expectError(json("{\"prom-timeout\": \"fast\"}"), "\"prom-timeout\" must be an integer (number or string of digits), got \"fast\"", 1, 18);
}

TEST(BadConfig, EtcdEndpointThatIsNotAUrl) {
    expectError(toml(kMinimal + "[store]\nendpoints = [\"127.0.0.1:2379\"]\n"), "must be a URL like http://127.0.0.1:2379", 8, 13);
}

TEST(BadConfig, EmptyArgvAction) { expectError(toml("app-name = \"a\"\nreplicas = [\"0\"]\n[actions]\nensure-active = []\n"), "is an empty argv array", 4, 17); }

TEST(BadConfig, UnitTableWithUnknownKey) {
    expectError(toml("app-name = \"a\"\nreplicas = [\"0\"]\n[actions]\nensure-active = { restart-unit = \"x\" }\n"),
                "unknown key 'restart-unit' (expected start-unit or stop-unit)");
}

TEST(BadConfig, OverrideForAReplicaThatDoesNotExist) {
    expectError(toml(kMinimal + "[replica.9]\npriority = 1\n"), "settings for replica \"9\", which is not in replicas", 7, 1);
}

TEST(BadConfig, SectionThatIsNotATable) { expectError(toml("store = 5\n" + kMinimal), "store must be a table"); }

TEST(BadConfig, ZeroRetryAttemptsInPromJson) {
    expectError(json("{\"no-of-retry-attempts\": 0}"), "would never run an ensure script");
}


TEST(ConfigWarnings, TimeoutBelowEtcdMinimumLeaseWarnsWithTheEffectiveValue) {
    auto r = toml(kMinimal + "[election]\ntimeout-ms = 1500\nmonitor-interval-ms = 200\ndemote-margin-ms = 300\n");
    ASSERT_TRUE(r.config) << errors(r);
    std::string all = errors(r);
    EXPECT_NE(all.find("rounded up to a whole-second etcd lease TTL of 2 s"), std::string::npos) << all;
}

TEST(BadConfig, UnknownMusicAuth) {
    expectError(toml(kMinimal + "[store]\nmusic-auth = \"kerberos\"\n"), "store.music-auth = \"kerberos\" is unknown", 8, 14);
}

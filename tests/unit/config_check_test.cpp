// The operator-facing config check (prom --check-config): what operators get wrong, each message
// naming the key to change and placed at that key.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include "config/config.hpp"

using namespace prom::config;

namespace {

LoadResult toml(const std::string& text, const std::string& id = "") {
    return loadText("check.conf", text, id);
}

std::string all(const LoadResult& r) {
    std::string s;
    for (const auto& d : r.diagnostics) s += d.format() + "\n";
    return s;
}

const Diagnostic* find(const LoadResult& r, Diagnostic::Severity sev, const std::string& needle) {
    for (const auto& d : r.diagnostics)
        if (d.severity == sev && d.format().find(needle) != std::string::npos) return &d;
    return nullptr;
}

void expectErrorAt(const LoadResult& r, const std::string& needle, int line, int column) {
    EXPECT_FALSE(r.config) << "accepted:\n" << all(r);
    const Diagnostic* d = find(r, Diagnostic::Severity::Error, needle);
    ASSERT_TRUE(d) << "no error containing '" << needle << "' in:\n" << all(r);
    EXPECT_EQ(d->at.line, line) << d->format();
    EXPECT_EQ(d->at.column, column) << d->format();
}

void expectWarningAt(const LoadResult& r, const std::string& needle, int line, int column) {
    const Diagnostic* d = find(r, Diagnostic::Severity::Warning, needle);
    ASSERT_TRUE(d) << "no warning containing '" << needle << "' in:\n" << all(r);
    EXPECT_EQ(d->at.line, line) << d->format();
    EXPECT_EQ(d->at.column, column) << d->format();
}

void expectClean(const LoadResult& r) {
    EXPECT_TRUE(r.config) << all(r);
    EXPECT_TRUE(r.diagnostics.empty()) << all(r);
}

std::string tempDir() {
    char t[] = "/tmp/prom-check-test-XXXXXX";
    return mkdtemp(t);
}

std::string file(const std::string& dir, const std::string& name, mode_t mode,
                 const std::string& content = "#!/bin/sh\nexit 0\n") {
    std::string p = dir + "/" + name;
    std::ofstream(p) << content;
    chmod(p.c_str(), mode);
    return p;
}

std::string slurp(const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Line 1-2 of every config below; [actions] starts at line 3.
const std::string kHead = "app-name = \"app\"\nreplicas = [\"0\", \"1\"]\n";

std::string actions(const std::string& active, const std::string& passive = "[\"/bin/true\"]") {
    return kHead + "[actions]\nensure-active = " + active + "\nensure-passive = " + passive + "\n";
}

}  // namespace

// ---- action programs ----

TEST(ActionPrograms, MissingArgvProgramIsAnErrorAtItsKey) {
    expectErrorAt(toml(actions("[\"/nonexistent/ensure\", \"%i\", \"active\"]")),
                  "check.conf:4:17: actions.ensure-active: program /nonexistent/ensure does not exist", 4, 17);
}

TEST(ActionPrograms, NonExecutableProgramIsAnError) {
    std::string p = file(tempDir(), "ensure", 0644);
    expectErrorAt(toml(actions("[\"" + p + "\"]")), "actions.ensure-active: program " + p + " is not executable", 4,
                  17);
}

TEST(ActionPrograms, DirectoryIsNotAProgram) {
    expectErrorAt(toml(actions("[\"/tmp\"]")), "/tmp is a directory", 4, 17);
}

TEST(ActionPrograms, ArgvProgramWithoutSlashIsNotSearchedInPath) {
    // argv actions are spawned without a PATH search (no shell): "true" would fail at runtime.
    expectErrorAt(toml(actions("[\"true\"]")), "argv actions run without a PATH search: give the full path (/", 4, 17);
}

TEST(ActionPrograms, FirstWordOfShellCommandIsLookedUpInPath) {
    expectErrorAt(toml(actions("\"no-such-program-prom-test %i active\"")),
                  "actions.ensure-active: program no-such-program-prom-test is not found in PATH", 4, 17);
    expectClean(toml(actions("\"true %i\"")));
    expectClean(toml(actions("\"sh -c 'exit 0'\"")));
}

TEST(ActionPrograms, ShellCommandWithMissingAbsolutePathIsAnError) {
    expectErrorAt(toml(actions("\"/nonexistent/ensure %i active\"")), "program /nonexistent/ensure does not exist", 4,
                  17);
}

TEST(ActionPrograms, ShellAssignmentsExecAndQuotesAreSeenThrough) {
    expectErrorAt(toml(actions("\"FOO=1 BAR=2 /nonexistent/x\"")), "program /nonexistent/x does not exist", 4, 17);
    expectErrorAt(toml(actions("\"exec /nonexistent/x %i\"")), "program /nonexistent/x does not exist", 4, 17);
    expectErrorAt(toml(actions("\"'/nonexistent/my prog' %i\"")), "program /nonexistent/my prog does not exist", 4, 17);
    expectClean(toml(actions("\"FOO=1 exec /bin/true\"")));
}

TEST(ActionPrograms, ShellBuiltinsKeywordsAndExpansionsAreNotChecked) {
    for (const char* cmd :
         {"exit 0", "test -e /x && /nonexistent/y", "$HOME/bin/ensure", "if true; then :; fi", "(/nonexistent/x)",
          "{ /nonexistent/x; }", "~/ensure", "`which true`", "cd / && ./x", "FOO=$(date) /nonexistent/x"})
        expectClean(toml(actions("'" + std::string(cmd) + "'")));
}

TEST(ActionPrograms, OnlyTheActionsThisReplicaRunsAreCheckedWithAnId) {
    std::string text = actions("[\"/bin/true\"]") + "[replica.1]\nensure-active = [\"/nonexistent/only-on-node-1\"]\n";
    expectClean(toml(text, "0"));
    expectErrorAt(toml(text, "1"), "replica.1.ensure-active: program /nonexistent/only-on-node-1 does not exist", 7,
                  17);
    expectErrorAt(toml(text), "replica.1.ensure-active: program /nonexistent/only-on-node-1", 7, 17);
}

TEST(ActionPrograms, RestartPromOfPeersRunsOnThisNodeAndIsChecked) {
    std::string text = actions("[\"/bin/true\"]") + "[replica.1]\nrestart-prom = [\"/nonexistent/restart\"]\n";
    expectErrorAt(toml(text, "0"), "replica.1.restart-prom: program /nonexistent/restart does not exist", 7, 16);
    EXPECT_TRUE(toml(text, "1").config) << "a replica never restarts itself";
}

TEST(ActionPrograms, OneMessagePerKeyNotPerReplica) {
    auto r = toml(actions("[\"/nonexistent/ensure\", \"%i\"]"));
    int n = 0;
    for (const auto& d : r.diagnostics) n += d.message.find("/nonexistent/ensure") != std::string::npos;
    EXPECT_EQ(n, 1) << all(r);
}

TEST(ActionPrograms, PromJsonCommandsAreCheckedAtTheirKey) {
    auto r =
        loadText("config.json", R"({"app-name":"a","replica-id-list":["0"],"music-location":["h"],"prom-timeout":5000,
"no-of-retry-attempts":1,"ensure-active-0":"/nonexistent/ensure 0 active","ensure-passive-0":"/bin/true"})");
    expectErrorAt(r, "\"ensure-active-0\": program /nonexistent/ensure does not exist", 2, 26);
}

// ---- unit names ----

TEST(UnitNames, WithoutTypeSuffixIsAnError) {
    expectErrorAt(
        toml(actions("{ start-unit = \"votingapp\" }")),
        "actions.ensure-active: \"votingapp\" is not a unit name: it has no type suffix (write votingapp.service)", 4,
        17);
}

TEST(UnitNames, TemplateWithoutInstanceIsAnError) {
    expectErrorAt(toml(actions("{ start-unit = \"app@.service\" }")), "is a template: name an instance (app@%i.service",
                  4, 17);
}

TEST(UnitNames, InvalidCharactersAndUnknownTypesAreErrors) {
    expectErrorAt(toml(actions("{ start-unit = \"my app.service\" }")), "\"my app.service\" is not a unit name", 4, 17);
    expectErrorAt(toml(actions("{ start-unit = \"app.servce\" }")), "unknown unit type \".servce\"", 4, 17);
    expectErrorAt(toml(actions("[\"/bin/true\"]", "{ stop-unit = \"@x.service\" }")), "is not a unit name", 5, 18);
}

TEST(UnitNames, ValidNamesAndInstancesPass) {
    expectClean(toml(actions("{ start-unit = \"app@%i.service\" }", "{ stop-unit = \"vip-1.target\" }")));
    expectClean(toml(actions("{ start-unit = \"sys-devices-x\\\\x2dy.mount\" }")));
}

// ---- defaults consistent with each other, messages at the key to change ----

TEST(ConsistentDefaults, ReadmeMinimalConfigHasNoWarnings) {
    // The ```toml block after "A minimal one:" in README.md, with a program that exists here.
    std::string readme = slurp(std::string(PROM_SOURCE_DIR) + "/README.md");
    auto at = readme.find("A minimal one:");
    ASSERT_NE(at, std::string::npos);
    auto begin = readme.find("```toml\n", at) + 8;
    auto end = readme.find("```", begin);
    std::string text = readme.substr(begin, end - begin);
    for (std::size_t pos = 0; (pos = text.find("/usr/lib/votingapp/ensure", pos)) != std::string::npos;)
        text.replace(pos, 25, "/bin/true");
    expectClean(toml(text, "0"));
}

TEST(ConsistentDefaults, ShippedSampleHasNoWarningsAndOnlyItsExampleProgramIsMissing) {
    std::string path = std::string(PROM_SOURCE_DIR) + "/conf/prom.conf";
    auto r = load(path, "0");
    for (const auto& d : r.diagnostics) {
        EXPECT_EQ(d.severity, Diagnostic::Severity::Error) << d.format();
        EXPECT_NE(d.message.find("program /usr/lib/votingapp/ensure does not exist"), std::string::npos) << d.format();
    }
    EXPECT_EQ(r.diagnostics.size(), access("/usr/lib/votingapp/ensure", X_OK) == 0 ? 0u : 2u) << all(r);
}

TEST(ConsistentDefaults, DefaultActionTimeoutDoesNotWarnAgainstTheDefaultMargin) {
    expectClean(toml(actions("[\"/bin/true\"]") + "timeout-ms = 30000\n[election]\ndemote-margin-ms = 1250\n"));
}

TEST(ConsistentDefaults, ShortTimeoutIsPlacedAtTimeoutAndNamesBothKeys) {
    // Only timeout-ms is written: the error belongs there, not at 1:1.
    expectErrorAt(
        toml(actions("[\"/bin/true\"]") + "[election]\ntimeout-ms = 500\n"),
        "election.timeout-ms (500 ms) must be longer than election.monitor-interval-ms (1000 ms, the default): "
        "raise election.timeout-ms or lower election.monitor-interval-ms",
        7, 14);
}

TEST(ConsistentDefaults, LongMonitorIntervalIsPlacedAtMonitorInterval) {
    expectErrorAt(
        toml(actions("[\"/bin/true\"]") + "[election]\nmonitor-interval-ms = 6000\n"),
        "election.monitor-interval-ms (6000 ms) must be shorter than election.timeout-ms (5000 ms, the default): "
        "lower election.monitor-interval-ms or raise election.timeout-ms",
        7, 23);
}

TEST(ConsistentDefaults, MarginTooLongSaysWhichKeysToChange) {
    expectErrorAt(
        toml(actions("[\"/bin/true\"]") + "[election]\ndemote-margin-ms = 4000\n"),
        "election.demote-margin-ms (4000 ms) must be shorter than two thirds of the lease TTL (3334 ms): lower "
        "election.demote-margin-ms below 3334 ms or raise election.timeout-ms to at least 7000 ms",
        7, 20);
}

// ---- replica ids ----

TEST(ReplicaIds, PathLikeAndOptionLikeIdsAreRefused) {
    for (const char* id : {".", "..", "-rf", "a/b", ".hidden", "a b", ""}) {
        auto r = toml("app-name = \"app\"\nreplicas = [\"" + std::string(id) +
                      "\"]\n[actions]\nensure-active = [\"/bin/true\"]\n"
                      "ensure-passive = [\"/bin/true\"]\n");
        expectErrorAt(r, "replica id \"" + std::string(id) + "\" is not allowed", 2, 12);
    }
}

TEST(ReplicaIds, IdsThatMapToTheSameBusNameAreRefused) {
    auto r = toml(
        "app-name = \"app\"\nreplicas = [\"a.b\", \"a-b\"]\n[actions]\nensure-active = [\"/bin/true\"]\n"
        "ensure-passive = [\"/bin/true\"]\n");
    expectErrorAt(r, "replica ids \"a.b\" and \"a-b\" both map to the D-Bus name org.prom.Prom1.Replica_a_b", 2, 12);
}

TEST(ReplicaIds, SafeIdsPass) {
    expectClean(
        toml("app-name = \"app\"\nreplicas = [\"0\", \"db-1\", \"db_2\", \"n3.example\"]\n[actions]\n"
             "ensure-active = [\"/bin/true\"]\nensure-passive = [\"/bin/true\"]\n"));
}

// ---- store credentials and TLS ----

TEST(StoreTls, MissingTlsFilesAreErrorsAtTheirKeys) {
    auto r = toml(actions("[\"/bin/true\"]") +
                  "[store]\nendpoints = [\"https://10.0.0.1:2379\"]\nca-file = \"/nonexistent/ca.pem\"\n"
                  "cert-file = \"/nonexistent/c.pem\"\nkey-file = \"/nonexistent/c.key\"\n");
    expectErrorAt(r, "store.ca-file: cannot read /nonexistent/ca.pem: No such file or directory", 8, 11);
    expectErrorAt(r, "store.cert-file: cannot read /nonexistent/c.pem", 9, 13);
    expectErrorAt(r, "store.key-file: cannot read /nonexistent/c.key", 10, 12);
}

TEST(StoreTls, CaFileWithPlainHttpEndpointIsAnError) {
    std::string ca = file(tempDir(), "ca.pem", 0644, "pem");
    expectErrorAt(
        toml(actions("[\"/bin/true\"]") + "[store]\nendpoints = [\"http://10.0.0.1:2379\"]\nca-file = \"" + ca +
             "\"\n"),
        "store.ca-file is set but endpoint http://10.0.0.1:2379 is plain http://: TLS is not used (write https://)", 8,
        11);
}

TEST(StoreTls, CredentialsOverPlainHttpToAnotherHostAreAWarning) {
    std::string dir = tempDir();
    std::string pw = file(dir, "pw", 0600, "secret\n");
    auto r =
        toml(actions("[\"/bin/true\"]") +
             "[store]\nendpoints = [\"http://10.0.0.1:2379\"]\nuserid = \"prom\"\npassword-file = \"" + pw + "\"\n");
    EXPECT_TRUE(r.config) << all(r);
    expectWarningAt(r, "store.userid: the password goes in clear text over plain http:// to 10.0.0.1", 8, 10);
    // Loopback: the password never leaves the host.
    expectClean(toml(actions("[\"/bin/true\"]") +
                     "[store]\nendpoints = [\"http://127.0.0.1:2379\"]\nuserid = \"prom\"\npassword-file = \"" + pw +
                     "\"\n"));
}

TEST(StoreTls, WorldReadablePasswordFileIsAWarning) {
    std::string pw = file(tempDir(), "pw", 0644, "secret\n");
    auto r = toml(actions("[\"/bin/true\"]") + "[store]\nuserid = \"prom\"\npassword-file = \"" + pw + "\"\n");
    EXPECT_TRUE(r.config) << all(r);
    expectWarningAt(r, "store.password-file: " + pw + " is readable by every user (mode 0644)", 8, 17);
}

TEST(StoreTls, MissingPasswordFileIsAnError) {
    expectErrorAt(
        toml(actions("[\"/bin/true\"]") + "[store]\nuserid = \"prom\"\npassword-file = \"/nonexistent/pw\"\n"),
        "store.password-file: cannot read /nonexistent/pw", 8, 17);
}

TEST(StoreTls, UserinfoInEndpointIsRefusedWithoutEchoingThePassword) {
    auto r =
        toml(actions("[\"/bin/true\"]") +
             "[store]\nendpoints = [\"http://root:hunter2@10.0.0.1:2379\", \"http://root:hunter2@10.0.0.1:2379\"]\n");
    expectErrorAt(r, "endpoint http://***@10.0.0.1:2379 carries credentials in the URL", 7, 13);
    EXPECT_EQ(all(r).find("hunter2"), std::string::npos) << all(r);
}

// ---- [http] ----

TEST(HttpConfig, ListensOnLoopbackByDefaultAndReplicasOverride) {
    auto r = toml(actions("[\"/bin/true\"]") + "[replica.1]\nhttp-listen = \"\"\n");
    ASSERT_TRUE(r.config) << all(r);
    EXPECT_EQ(r.config->settingsOf("0").httpListen, "127.0.0.1:9479");
    EXPECT_EQ(r.config->settingsOf("1").httpListen, "");
    auto v6 = toml(actions("[\"/bin/true\"]") +
                   "[http]\nlisten = \"[::1]:9100\"\n[replica.1]\nhttp-listen = \"127.0.0.1:9101\"\n");
    ASSERT_TRUE(v6.config) << all(v6);
    EXPECT_EQ(v6.config->settingsOf("0").httpListen, "[::1]:9100");
    EXPECT_EQ(v6.config->settingsOf("1").httpListen, "127.0.0.1:9101");
}

TEST(HttpConfig, BadListenAddressesAreErrorsAtTheirKey) {
    expectErrorAt(toml(actions("[\"/bin/true\"]") + "[http]\nlisten = \"localhost:9479\"\n"),
                  "http.listen = \"localhost:9479\": the host must be an IPv4 address or [IPv6] literal", 7, 10);
    expectErrorAt(toml(actions("[\"/bin/true\"]") + "[http]\nlisten = \"127.0.0.1:0\"\n"), "the port must be 1-65535",
                  7, 10);
    expectErrorAt(toml(actions("[\"/bin/true\"]") + "[replica.0]\nhttp-listen = \"127.0.0.1\"\n"),
                  "replica.0.http-listen = \"127.0.0.1\": expected HOST:PORT", 7, 15);
}

TEST(HttpConfig, TwoReplicasOnTheSameAddressIsAWarning) {
    // Each node runs one replica as a rule, so the same address in the shared file is fine; but a
    // per-replica override that equals another replica's address on purpose is a typo.
    auto r = toml(actions("[\"/bin/true\"]") +
                  "[replica.0]\nhttp-listen = \"127.0.0.1:9500\"\n[replica.1]\nhttp-listen = \"127.0.0.1:9500\"\n");
    EXPECT_TRUE(r.config) << all(r);
    expectWarningAt(r, "replica.1.http-listen = \"127.0.0.1:9500\" is also replica 0's", 9, 15);
}

TEST(HttpConfig, ParsesListenAddresses) {
    auto a = parseListenAddress("127.0.0.1:9479");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 9479);
    EXPECT_FALSE(a->ipv6);
    auto b = parseListenAddress("[::1]:80");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->host, "::1");
    EXPECT_TRUE(b->ipv6);
    for (const char* bad : {"", ":80", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:8x", "[::1:80", "::1:80", "999.1.1.1:80"})
        EXPECT_FALSE(parseListenAddress(bad)) << bad;
}

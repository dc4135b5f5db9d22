// promctl(1): a small client of the org.prom.Prom1 D-Bus API of the prom daemons on this node.
// Exit codes: 0 ok (status: exactly one active), 1 failure, 2 invalid arguments, 3 not active
// (status: no active), 4 store unavailable, 5 access denied, 6 (status) more than one active or
// replicas disagree on the leader, 64 usage.
#include <getopt.h>
#include <poll.h>
#include <sdbus-c++/sdbus-c++.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <algorithm>
#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/json.hpp"
#include "config/config.hpp"
#include "ctl/cluster_commands.hpp"
#include "ctl/output.hpp"

namespace {

constexpr const char* kInterface = "org.prom.Prom1.Replica";
constexpr const char* kPath = "/org/prom/Prom1";
constexpr const char* kPrefix = "org.prom.Prom1.Replica_";

using prom::ctl::clean;
using prom::ctl::fitLastColumn;
using prom::ctl::kExitNoActive;
using prom::ctl::kExitSeveralActives;
using prom::ctl::kExitStoreUnavailable;
using prom::ctl::since;

using Millis = std::chrono::milliseconds;

struct Instance {
    std::string bus;
    std::map<std::string, sdbus::Variant> props;
    std::string error;  ///< why the daemon did not answer ("" = it did)
    bool answered() const { return error.empty(); }
    template <class T>
    T get(const char* name) const {
        auto it = props.find(name);
        if (it == props.end()) return T{};
        // A daemon of another version (or an impostor) may send another type: not a crash.
        try {
            return it->second.get<T>();
        } catch (const sdbus::Error&) {
            return T{};
        }
    }
    /** The replica id: from the daemon, or from the bus name when it did not answer. */
    std::string id() const;
};

std::string Instance::id() const {
    if (answered()) return get<std::string>("ReplicaId");
    return bus.substr(std::string(kPrefix).size());
}

void usage(std::FILE* to) {
    std::fprintf(to,
                 "Usage: promctl [-c CONFIG] [--bus system|session] [--timeout MS] COMMAND\n"
                 "\n"
                 "Commands:\n"
                 "  status [--json] [--watch]\n"
                 "                      the replicas: role, leader, token, store, pause, last error\n"
                 "  switchover [ID]     hand the active role to replica ID (default: the best passive)\n"
                 "                      and wait until it is active\n"
                 "  resign              the active gives up its role; wait for the next active\n"
                 "  pause [ID|--cluster]\n"
                 "                      stop campaigning and checks (maintenance); --cluster: every\n"
                 "                      replica, kept in the store until resume --cluster\n"
                 "  resume [ID|--cluster]\n"
                 "                      end a pause\n"
                 "\n"
                 "With -c CONFIG (the replicas' prom.conf) promctl works from any node through the store:\n"
                 "status lists every configured replica, down ones included; switchover, resign and pause\n"
                 "are requests the replica they name carries out, checked (target known, alive, not\n"
                 "paused) and waited for. Without -c it talks to the daemons on this node over D-Bus.\n"
                 "--timeout (default 2000) bounds each daemon's or the store's answer.\n"
                 "status exits 0 with exactly one active, 3 with none, 4 when the store is unreachable,\n"
                 "6 with several actives or disagreeing replicas. See promctl(1).\n");
}

std::uint64_t monotonicUsec() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

// All daemons are asked at once, each call with its own timeout, and the answers are collected
// on this thread: a frozen daemon costs one timeout, and only its own row.
std::vector<Instance> instances(sdbus::IConnection& conn, Millis timeout) {
    auto dbus = sdbus::createProxy(conn, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    std::vector<std::string> names;
    dbus->callMethod("ListNames").onInterface("org.freedesktop.DBus").withTimeout(timeout).storeResultsTo(names);
    std::vector<Instance> out;
    for (const auto& n : names)
        if (n.rfind(kPrefix, 0) == 0) out.push_back(Instance{n, {}, {}});
    std::vector<std::unique_ptr<sdbus::IProxy>> proxies;
    std::size_t pending = out.size();
    for (auto& i : out) {
        proxies.push_back(sdbus::createProxy(conn, i.bus, kPath));
        Instance* self = &i;
        proxies.back()
            ->callMethodAsync("GetAll")
            .onInterface("org.freedesktop.DBus.Properties")
            .withTimeout(timeout)
            .withArguments(std::string(kInterface))
            .uponReplyInvoke([self, &pending, timeout](const sdbus::Error* e,
                                                       std::map<std::string, sdbus::Variant> props) {
                --pending;
                if (!e) {
                    self->props = std::move(props);
                    return;
                }
                bool noReply = e->getName() == "org.freedesktop.DBus.Error.NoReply" ||
                               e->getName() == "org.freedesktop.DBus.Error.Timeout" ||
                               e->getMessage().find("timed out") != std::string::npos;
                self->error = noReply
                                  ? "no reply within " + std::to_string(timeout.count()) + " ms (frozen or overloaded?)"
                                  : e->getName() + ": " + e->getMessage();
            });
    }
    // sd-bus times the calls out itself; the deadline only guards against a reply never counted.
    const std::uint64_t deadline = monotonicUsec() + static_cast<std::uint64_t>(timeout.count()) * 1000 + 1000000;
    while (pending > 0 && monotonicUsec() < deadline) {
        while (pending > 0 && conn.processPendingRequest()) {
        }
        if (pending == 0) break;
        auto pd = conn.getEventLoopPollData();
        std::uint64_t now = monotonicUsec();
        std::uint64_t until = std::min<std::uint64_t>(pd.timeout_usec, deadline);
        int waitMs = until <= now ? 0 : static_cast<int>((until - now + 999) / 1000);
        pollfd p{pd.fd, pd.events, 0};
        poll(&p, 1, waitMs);
    }
    for (auto& i : out)
        if (i.props.empty() && i.error.empty()) i.error = "no reply within " + std::to_string(timeout.count()) + " ms";
    return out;
}

/** What the answering daemons say about the active, as an exit status (promctl(1)). */
int verdict(const std::vector<Instance>& all, std::string& summary) {
    std::vector<const Instance*> answered, healthy;
    std::set<std::string> actives, leaders;
    for (const auto& i : all) {
        if (!i.answered()) continue;
        answered.push_back(&i);
        if (i.get<std::string>("Role") == "active") actives.insert(i.id());
        if (!i.get<bool>("StoreHealthy")) continue;
        healthy.push_back(&i);
        if (!i.get<std::string>("Leader").empty()) leaders.insert(i.get<std::string>("Leader"));
    }
    if (answered.empty()) return summary = "no prom daemon answered", 1;
    if (actives.size() > 1) return summary = "several local replicas are active", kExitSeveralActives;
    if (healthy.empty())
        return summary = "the store is unreachable from every replica that answered", kExitStoreUnavailable;
    if (leaders.size() > 1) return summary = "the replicas disagree on the leader", kExitSeveralActives;
    if (leaders.empty()) return summary = "no active replica", kExitNoActive;
    const std::string leader = *leaders.begin();
    for (const Instance* i : answered)
        if (i->id() == leader && i->get<std::string>("Role") != "active")
            return summary =
                       "the leader " + clean(leader) + " is " + clean(i->get<std::string>("Role")) + ", not active yet",
                   kExitNoActive;
    return summary = "active: " + clean(leader), 0;
}

/** An age in the two largest units that matter, like kubectl's AGE: 42s, 3m12s, 5h7m, 2d3h. */
/** LAST-ERROR with how long the error has stood ("[12s ago] ..."), from LastErrorUSec. A daemon
 *  too old to have that property shows the text alone. The daemon is local, so its clock is
 *  ours; an error time ahead of us (the clock was stepped back) counts as 0s, not as garbage. */
std::string lastErrorColumn(const Instance& i) {
    return prom::ctl::withAge(clean(i.get<std::string>("LastError")), i.get<std::uint64_t>("LastErrorUSec"));
}

// Width of the columns before LAST-ERROR in the table below.
constexpr std::size_t kFixedColumns = 10 + 12 + 10 + 8 + 8 + 6 + 6 + 6 + 8 + 19 + 10;

int status(sdbus::IConnection& conn, Millis timeout) {
    auto all = instances(conn, timeout);
    if (all.empty()) {
        std::printf("no prom replica daemon on this bus\n");
        return 1;
    }
    std::printf("%-10s %-12s %-10s %-8s %-8s %-6s %-6s %-6s %-8s %-19s %s\n", "REPLICA", "APP", "ROLE", "LEADER", "TOKEN",
                "STORE", "PAUSED", "MODE", "SUPPORT", "SINCE", "LAST-ERROR");
    for (const auto& i : all) {
        if (!i.answered()) {
            std::printf("%-10s %-12s %-10s %-8s %-8s %-6s %-6s %-6s %-8s %-19s %s\n", clean(i.id()).c_str(), "-", "NO-REPLY",
                        "-", "-", "-", "-", "-", "-", "-", clean(i.error).c_str());
            continue;
        }
        // A leader seen before the store became unreachable may be stale: marked with "?".
        std::string leader = i.get<std::string>("Leader").empty() ? "-" : clean(i.get<std::string>("Leader"));
        if (!i.get<bool>("StoreHealthy")) leader += "?";
        // Fast mode: SUPPORT = peers supporting the active's epoch (only the holder has one).
        std::string mode = i.get<std::string>("Mode").empty() ? "-" : clean(i.get<std::string>("Mode"));
        std::string support = mode == "fast" && i.get<std::string>("Role") == "active"
                                  ? std::to_string(i.get<std::uint32_t>("PeerSupport"))
                                  : "-";
        std::printf("%-10s %-12s %-10s %-8s %-8llu %-6s %-6s %-6s %-8s %-19s %s\n", clean(i.id()).c_str(),
                    clean(i.get<std::string>("AppName")).c_str(), clean(i.get<std::string>("Role")).c_str(),
                    leader.c_str(), static_cast<unsigned long long>(i.get<std::uint64_t>("FencingToken")),
                    i.get<bool>("StoreHealthy") ? "ok" : "DOWN", i.get<bool>("Paused") ? "yes" : "no", mode.c_str(),
                    support.c_str(),
                    since(i.get<std::uint64_t>("LastTransitionUSec")).c_str(),
                    fitLastColumn(lastErrorColumn(i), kFixedColumns).c_str());
    }
    std::string summary;
    int code = verdict(all, summary);
    std::fprintf(code ? stderr : stdout, "%s\n", summary.c_str());
    return code;
}

/** Local daemons by replica id (promctl -c status's LOCAL column); empty when there is no bus. */
std::map<std::string, prom::ctl::LocalDetail> localDetails(const std::string& bus, Millis timeout, const std::string& app) {
    std::map<std::string, prom::ctl::LocalDetail> out;
    try {
        auto conn = bus == "system" ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection();
        for (auto& i : instances(*conn, timeout)) {
            if (i.answered() && i.get<std::string>("AppName") != app) continue;
            prom::ctl::LocalDetail d;
            d.answered = i.answered();
            d.error = i.error;
            d.role = i.get<std::string>("Role");
            d.storeHealthy = i.get<bool>("StoreHealthy");
            d.lastError = i.get<std::string>("LastError");
            d.lastErrorUsec = i.get<std::uint64_t>("LastErrorUSec");
            out[i.id()] = d;
        }
    } catch (const sdbus::Error&) {
    }
    return out;
}

volatile std::sig_atomic_t g_interrupted = 0;

/** status once, or with --watch every second until Ctrl-C (like patronictl list -W): the
 *  screen redrawn on a terminal, one JSON document per line with --json. */
int repeat(bool watch, bool asJson, const std::function<int()>& once) {
    if (!watch) return once();
    std::signal(SIGINT, [](int) { g_interrupted = 1; });
    std::signal(SIGTERM, [](int) { g_interrupted = 1; });
    const bool redraw = !asJson && isatty(STDOUT_FILENO);
    int code = 0;
    while (!g_interrupted) {
        if (redraw) std::printf("\033[H\033[J");
        code = once();
        std::fflush(stdout);
        for (int i = 0; i < 10 && !g_interrupted; ++i) usleep(100000);
    }
    return code;
}

int exitCodeFor(const sdbus::Error& e) {
    const std::string& n = e.getName();
    if (n == "org.prom.Prom1.Error.InvalidArgs" || n == "org.prom.Prom1.Error.Paused") return 2;
    if (n == "org.prom.Prom1.Error.NotActive") return 3;
    if (n == "org.prom.Prom1.Error.StoreUnavailable") return 4;
    if (n == "org.freedesktop.DBus.Error.AccessDenied") return 5;
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string bus = "system";
    std::string configPath;
    bool asJson = false;
    Millis timeout{2000};
    static const option longOptions[] = {{"bus", required_argument, nullptr, 'b'},
                                         {"timeout", required_argument, nullptr, 't'},
                                         {"config", required_argument, nullptr, 'c'},
                                         {"json", no_argument, nullptr, 'j'},
                                         {"help", no_argument, nullptr, 'h'},
                                         {nullptr, 0, nullptr, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "+hc:", longOptions, nullptr)) != -1) {
        if (c == 'c') {
            configPath = optarg;
        } else if (c == 'j') {
            asJson = true;
        } else if (c == 'b') {
            bus = optarg;
        } else if (c == 't') {
            char* end = nullptr;
            long v = std::strtol(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > 600000) {
                std::fprintf(stderr, "promctl: --timeout takes milliseconds (1-600000), not '%s'\n", optarg);
                return 64;
            }
            timeout = Millis(v);
        } else if (c == 'h') {
            return usage(stdout), 0;
        } else {
            return usage(stderr), 64;
        }
    }
    if (optind >= argc || (bus != "system" && bus != "session")) return usage(stderr), 64;
    std::string cmd = argv[optind];
    std::vector<std::string> rest(argv + optind + 1, argv + argc);
    bool watch = false, cluster = false;
    // Options after the command too, as DESIGN and promctl(1) write them.
    std::vector<std::string> args;
    for (const auto& r : rest) {
        if (cmd == "status" && r == "--json") asJson = true;
        else if (cmd == "status" && (r == "--watch" || r == "-w")) watch = true;
        else if ((cmd == "pause" || cmd == "resume") && r == "--cluster") cluster = true;
        else if (!r.empty() && r[0] == '-') return usage(stderr), 64;
        else args.push_back(r);
    }
    if (args.size() > (cmd == "status" || cmd == "resign" ? 0u : 1u)) return usage(stderr), 64;
    if (cluster && !args.empty()) return usage(stderr), 64;
    std::string arg = args.empty() ? "" : args.front();
    if (!configPath.empty()) {
        auto loaded = prom::config::load(configPath, "", prom::config::HostChecks::Skip);
        for (const auto& d : loaded.diagnostics)
            if (!loaded.config) std::fprintf(stderr, "%s\n", clean(d.format()).c_str());
        if (!loaded.config) return 78;
        const prom::config::Config& config = *loaded.config;
        if (cmd == "status")
            return repeat(watch, asJson, [&] {
                return prom::ctl::clusterStatus(config, timeout, asJson, localDetails(bus, timeout, config.appName));
            });
        if (cmd != "switchover" && cmd != "resign" && cmd != "pause" && cmd != "resume") return usage(stderr), 64;
        if (config.store.backend != prom::config::Backend::Etcd) {
            std::fprintf(stderr,
                         "promctl: %s through the store needs etcd (this configuration uses MUSIC, which has no "
                         "control keys): run promctl without -c on the node of the replica\n",
                         cmd.c_str());
            return 2;
        }
        try {
            if (cmd == "switchover") return prom::ctl::clusterSwitchover(config, arg, timeout);
            if (cmd == "resign") return prom::ctl::clusterResign(config, timeout);
            if (!cluster && arg.empty()) {
                std::fprintf(stderr, "promctl: %s: name a replica, or --cluster for the whole cluster\n", cmd.c_str());
                return 2;
            }
            return prom::ctl::clusterPause(config, cmd == "pause", cluster, arg, timeout);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "promctl: %s\n", clean(e.what()).c_str());
            return 1;
        }
    }
    if (cluster) {
        std::fprintf(stderr, "promctl: %s --cluster needs -c CONFIG: the cluster pause is kept in the store\n", cmd.c_str());
        return 2;
    }
    try {
        auto conn = bus == "system" ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection();
        if (cmd == "status") return repeat(watch, asJson, [&] { return status(*conn, timeout); });
        auto all = instances(*conn, timeout);
        const Instance* target = nullptr;
        if (cmd == "switchover" || cmd == "resign") {
            for (const auto& i : all)
                if (i.get<std::string>("Role") == "active") target = &i;
            if (!target) {
                std::string leader = all.empty() ? "" : clean(all.front().get<std::string>("Leader"));
                std::fprintf(stderr, "promctl: no replica on this node is active%s\n",
                             leader.empty() ? "" : (" (the active is replica " + leader + ")").c_str());
                return 3;
            }
        } else if (cmd == "pause" || cmd == "resume") {
            for (const auto& i : all)
                if (arg.empty() ? all.size() == 1 : i.id() == arg) target = &i;
            if (!target) {
                std::fprintf(stderr, "promctl: %s\n",
                             arg.empty() ? "several (or no) replicas on this node: name one"
                                         : ("no replica " + clean(arg) + " on this node").c_str());
                return 2;
            }
        } else {
            return usage(stderr), 64;
        }
        if (!target->answered()) {
            std::fprintf(stderr, "promctl: replica %s: %s\n", clean(target->id()).c_str(),
                         clean(target->error).c_str());
            return 1;
        }
        auto p = sdbus::createProxy(*conn, target->bus, kPath);
        if (cmd == "switchover") {
            const std::string from = target->id();
            const std::uint64_t oldToken = target->get<std::uint64_t>("FencingToken");
            const std::uint64_t started = monotonicUsec();
            p->callMethod("Switchover").onInterface(kInterface).withTimeout(timeout).withArguments(arg);
            // Done means a new active exists, not that the old one let go: wait for it (what the
            // old active's daemon learns from its watch).
            const std::uint64_t waitUsec = std::max<std::uint64_t>(15000000, static_cast<std::uint64_t>(timeout.count()) * 1000);
            std::string to;
            std::uint64_t token = 0;
            while (monotonicUsec() - started < waitUsec) {
                for (const auto& i : instances(*conn, timeout))
                    if (i.bus == target->bus && i.answered() && !i.get<std::string>("Leader").empty() &&
                        i.get<std::string>("Leader") != from && i.get<std::uint64_t>("FencingToken") > oldToken) {
                        to = i.get<std::string>("Leader");
                        token = i.get<std::uint64_t>("FencingToken");
                    }
                if (!to.empty()) break;
                usleep(100000);
            }
            double ms = static_cast<double>(monotonicUsec() - started) / 1000.0;
            if (to.empty()) {
                std::fprintf(stderr, "promctl: switchover: replica %s gave up the role but no replica became active within %.0f ms\n",
                             clean(from).c_str(), ms);
                return 1;
            }
            if (!arg.empty() && to != arg) {
                std::fprintf(stderr, "promctl: switchover: %s -> %s (token %llu) in %.0f ms, not %s as asked\n", clean(from).c_str(),
                             clean(to).c_str(), static_cast<unsigned long long>(token), ms, clean(arg).c_str());
                return 1;
            }
            std::printf("%s -> %s (token %llu) in %.0f ms\n", clean(from).c_str(), clean(to).c_str(),
                        static_cast<unsigned long long>(token), ms);
            return 0;
        }
        else if (cmd == "resign")
            p->callMethod("Resign").onInterface(kInterface).withTimeout(timeout);
        else
            p->callMethod(cmd == "pause" ? "Pause" : "Resume").onInterface(kInterface).withTimeout(timeout);
        std::printf("%s: done (replica %s)\n", cmd.c_str(), clean(target->id()).c_str());
        return 0;
    } catch (const sdbus::Error& e) {
        std::fprintf(stderr, "promctl: %s: %s\n", clean(e.getName()).c_str(), clean(e.getMessage()).c_str());
        return exitCodeFor(e);
    }
}

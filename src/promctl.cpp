// promctl(1): a small client of the org.prom.Prom1 D-Bus API of the prom daemons on this node.
// Exit codes: 0 ok, 1 failure, 2 invalid arguments, 3 not active, 4 store unavailable,
// 5 access denied, 64 usage.
#include <getopt.h>

#include <sdbus-c++/sdbus-c++.h>

#include <cstdio>
#include <ctime>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr const char* kInterface = "org.prom.Prom1.Replica";
constexpr const char* kPath = "/org/prom/Prom1";
constexpr const char* kPrefix = "org.prom.Prom1.Replica_";

struct Instance {
    std::string bus;
    std::map<std::string, sdbus::Variant> props;
    template <class T>
    T get(const char* name) const {
        auto it = props.find(name);
        return it == props.end() ? T{} : it->second.get<T>();
    }
};

void usage(std::FILE* to) {
    std::fprintf(to,
                 "Usage: promctl [--bus system|session] COMMAND\n"
                 "\n"
                 "Commands:\n"
                 "  status              every prom replica daemon on this node: role, leader, token, store\n"
                 "  switchover [ID]     hand the active role to replica ID (default: the best passive)\n"
                 "  resign              give up the active role\n"
                 "  pause [REPLICA]     stop running actions and campaigning (maintenance)\n"
                 "  resume [REPLICA]    end a pause\n"
                 "\n"
                 "switchover and resign go to the local replica that is active. See promctl(1).\n");
}

std::vector<Instance> instances(sdbus::IConnection& conn) {
    auto dbus = sdbus::createProxy(conn, "org.freedesktop.DBus", "/org/freedesktop/DBus");
    std::vector<std::string> names;
    dbus->callMethod("ListNames").onInterface("org.freedesktop.DBus").storeResultsTo(names);
    std::vector<Instance> out;
    for (const auto& n : names) {
        if (n.rfind(kPrefix, 0) != 0) continue;
        Instance i{n, {}};
        auto p = sdbus::createProxy(conn, n, kPath);
        p->callMethod("GetAll").onInterface("org.freedesktop.DBus.Properties").withArguments(std::string(kInterface)).storeResultsTo(i.props);
        out.push_back(std::move(i));
    }
    return out;
}

std::string since(std::uint64_t usec) {
    if (!usec) return "-";
    std::time_t t = static_cast<std::time_t>(usec / 1000000);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

int status(sdbus::IConnection& conn) {
    auto all = instances(conn);
    if (all.empty()) {
        std::printf("no prom replica daemon on this bus\n");
        return 1;
    }
    std::printf("%-10s %-12s %-10s %-8s %-8s %-6s %-6s %-19s %s\n", "REPLICA", "APP", "ROLE", "LEADER", "TOKEN", "STORE", "PAUSED",
                "SINCE", "LAST-ERROR");
    for (const auto& i : all) {
        std::printf("%-10s %-12s %-10s %-8s %-8llu %-6s %-6s %-19s %s\n", i.get<std::string>("ReplicaId").c_str(),
                    i.get<std::string>("AppName").c_str(), i.get<std::string>("Role").c_str(),
                    i.get<std::string>("Leader").empty() ? "-" : i.get<std::string>("Leader").c_str(),
                    static_cast<unsigned long long>(i.get<std::uint64_t>("FencingToken")), i.get<bool>("StoreHealthy") ? "ok" : "DOWN",
                    i.get<bool>("Paused") ? "yes" : "no", since(i.get<std::uint64_t>("LastTransitionUSec")).c_str(),
                    i.get<std::string>("LastError").c_str());
    }
    return 0;
}

int exitCodeFor(const sdbus::Error& e) {
    const std::string& n = e.getName();
    if (n == "org.prom.Prom1.Error.InvalidArgs") return 2;
    if (n == "org.prom.Prom1.Error.NotActive") return 3;
    if (n == "org.prom.Prom1.Error.StoreUnavailable") return 4;
    if (n == "org.freedesktop.DBus.Error.AccessDenied") return 5;
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string bus = "system";
    static const option longOptions[] = {{"bus", required_argument, nullptr, 'b'}, {"help", no_argument, nullptr, 'h'}, {nullptr, 0, nullptr, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "+h", longOptions, nullptr)) != -1) {
        if (c == 'b') bus = optarg;
        else if (c == 'h') return usage(stdout), 0;
        else return usage(stderr), 64;
    }
    if (optind >= argc || (bus != "system" && bus != "session")) return usage(stderr), 64;
    std::string cmd = argv[optind];
    std::string arg = optind + 1 < argc ? argv[optind + 1] : "";
    if (optind + 2 < argc) return usage(stderr), 64;
    try {
        auto conn = bus == "system" ? sdbus::createSystemBusConnection() : sdbus::createSessionBusConnection();
        if (cmd == "status") return status(*conn);
        auto all = instances(*conn);
        const Instance* target = nullptr;
        if (cmd == "switchover" || cmd == "resign") {
            for (const auto& i : all)
                if (i.get<std::string>("Role") == "active") target = &i;
            if (!target) {
                std::string leader = all.empty() ? "" : all.front().get<std::string>("Leader");
                std::fprintf(stderr, "promctl: no replica on this node is active%s\n",
                             leader.empty() ? "" : (" (the active is replica " + leader + ")").c_str());
                return 3;
            }
        } else if (cmd == "pause" || cmd == "resume") {
            for (const auto& i : all)
                if (arg.empty() ? all.size() == 1 : i.get<std::string>("ReplicaId") == arg) target = &i;
            if (!target) {
                std::fprintf(stderr, "promctl: %s\n", arg.empty() ? "several (or no) replicas on this node: name one" : ("no replica " + arg + " on this node").c_str());
                return 2;
            }
        } else {
            return usage(stderr), 64;
        }
        auto p = sdbus::createProxy(*conn, target->bus, kPath);
        if (cmd == "switchover")
            p->callMethod("Switchover").onInterface(kInterface).withArguments(arg);
        else if (cmd == "resign")
            p->callMethod("Resign").onInterface(kInterface);
        else
            p->callMethod(cmd == "pause" ? "Pause" : "Resume").onInterface(kInterface);
        std::printf("%s: done (replica %s)\n", cmd.c_str(), target->get<std::string>("ReplicaId").c_str());
        return 0;
    } catch (const sdbus::Error& e) {
        std::fprintf(stderr, "promctl: %s: %s\n", e.getName().c_str(), e.getMessage().c_str());
        return exitCodeFor(e);
    }
}

// prom(8): command line, then the daemon. Exit codes: 0 ok, 64 usage, 78 bad configuration
// (EX_CONFIG), 1 runtime failure.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "common/log.hpp"
#include "config/config.hpp"
#include "daemon.hpp"
#include "prom/version.hpp"
#include "sd/event_loop.hpp"

namespace {

constexpr int kExitUsage = 64;
constexpr int kExitConfig = 78;

void usage(std::FILE* to) {
    std::fprintf(to,
                 "Usage: prom --id ID [--config PATH] [--passive] [--bus system|session|none]\n"
                 "       prom --check-config [--config PATH] [--id ID]\n"
                 "       prom --version | --help\n"
                 "\n"
                 "Keeps exactly one replica of a service active and the others passive.\n"
                 "\n"
                 "  -i, --id ID         this replica's id (one of the configured replicas)\n"
                 "  -c, --config PATH   TOML file, PROM config.json, or a directory holding config.json\n"
                 "                      (default /etc/prom/prom.conf)\n"
                 "  -p, --passive       start passive: wait for a live active before campaigning\n"
                 "      --bus BUS       where to offer the D-Bus API: system (default), session, none\n"
                 "      --check-config  validate the configuration and exit (0, or 78 with messages)\n"
                 "      --version       print the version\n"
                 "  -h, --help          this text\n"
                 "\n"
                 "See prom(8) and prom.conf(5).\n");
}

}  // namespace

int main(int argc, char** argv) {
    std::string id, configPath = "/etc/prom/prom.conf", bus = "system";
    bool passive = false, check = false;
    enum { kBus = 1000, kCheck, kVersion };
    static const option longOptions[] = {{"id", required_argument, nullptr, 'i'},
                                         {"config", required_argument, nullptr, 'c'},
                                         {"passive", no_argument, nullptr, 'p'},
                                         {"bus", required_argument, nullptr, kBus},
                                         {"check-config", no_argument, nullptr, kCheck},
                                         {"version", no_argument, nullptr, kVersion},
                                         {"help", no_argument, nullptr, 'h'},
                                         {nullptr, 0, nullptr, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "i:c:ph", longOptions, nullptr)) != -1) {
        switch (c) {
            case 'i': id = optarg; break;
            case 'c': configPath = optarg; break;
            case 'p': passive = true; break;
            case kBus: bus = optarg; break;
            case kCheck: check = true; break;
            case kVersion: std::printf("prom %s\n", prom::kVersion); return 0;
            case 'h': usage(stdout); return 0;
            default: usage(stderr); return kExitUsage;
        }
    }
    if (optind < argc) {
        std::fprintf(stderr, "prom: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return kExitUsage;
    }
    if (bus != "none" && bus != "system" && bus != "session") {
        std::fprintf(stderr, "prom: --bus must be system, session or none, not '%s'\n", bus.c_str());
        return kExitUsage;
    }

    auto loaded = prom::config::load(configPath, id);
    for (const auto& d : loaded.diagnostics) std::fprintf(stderr, "%s\n", d.format().c_str());
    if (check) {
        if (!loaded.config) return kExitConfig;
        const auto& cfg = *loaded.config;
        std::printf("%s: ok (app %s, %zu replicas, %s backend)\n", cfg.path.c_str(), cfg.appName.c_str(), cfg.replicas.size(),
                    cfg.store.backend == prom::config::Backend::Etcd ? "etcd" : "music");
        return 0;
    }
    if (id.empty()) {
        std::fprintf(stderr, "prom: --id is required\n");
        usage(stderr);
        return kExitUsage;
    }
    if (!loaded.config) return kExitConfig;
    try {
        prom::sd::EventLoop::blockSignals();
        return prom::runDaemon({id, configPath, passive, bus}, std::move(*loaded.config));
    } catch (const std::exception& e) {
        // A bug or an impossible state: say so once and let systemd restart us.
        prom::log::error(std::string("fatal: ") + e.what());
        return 1;
    }
}

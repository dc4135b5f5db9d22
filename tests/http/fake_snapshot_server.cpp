// Test helper: prom's http::Server on an sd-event loop with a fake snapshot that the test steers
// through stdin ("role active", "store 0|1", "running 0|1", "action ensure-active 1 0.2",
// "store-latency 0.003", "lease 2.5", "last-error USEC"). Prints "port N" once listening; a
// listen failure is printed as "error: ..." with exit status 1. Ends on EOF of stdin.
#include <sys/epoll.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "http/server.hpp"
#include "sd/event_loop.hpp"

int main(int argc, char** argv) {
    std::string listen = argc > 1 ? argv[1] : "127.0.0.1:0";
    prom::sd::EventLoop loop;
    prom::http::Snapshot snap;
    snap.app = "fake\"app\\";
    snap.replica = "0";
    snap.version = "test";
    snap.role = "passive";
    snap.leader = "1";
    snap.fencingToken = 7;
    snap.storeHealthy = true;
    prom::http::Server server(loop, [&] { return snap; });
    prom::Result<prom::Ok> r = listen == "127.0.0.1:0"
                                   ? server.start(prom::config::ListenAddress{"127.0.0.1", 0, false})
                                   : server.start(listen);
    if (!r) {
        std::printf("error: %s\n", r.error().message.c_str());
        return 1;
    }
    std::printf("port %u\n", server.port());
    std::fflush(stdout);
    std::string pending;
    auto input = loop.addIo(STDIN_FILENO, EPOLLIN, [&](std::uint32_t) {
        char buf[512];
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n <= 0) return loop.exit(0);
        pending.append(buf, static_cast<std::size_t>(n));
        for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
            std::istringstream line(pending.substr(0, nl));
            pending.erase(0, nl + 1);
            std::string cmd;
            line >> cmd;
            if (cmd == "role") {
                std::string role;
                line >> role;
                if (role != snap.role) ++snap.counters.transitions;
                snap.role = role;
            } else if (cmd == "store") {
                line >> snap.storeHealthy;
            } else if (cmd == "running") {
                line >> snap.running;
            } else if (cmd == "token") {
                line >> snap.fencingToken;
            } else if (cmd == "lease") {
                double s;
                line >> s;
                snap.leaseRemainingSeconds = s;
            } else if (cmd == "action") {
                std::string kind;
                bool ok;
                double seconds;
                line >> kind >> ok >> seconds;
                snap.counters.actionFinished(kind, ok, seconds);
            } else if (cmd == "last-error") {
                line >> snap.lastErrorUSec;
            } else if (cmd == "store-latency") {
                double s;
                line >> s;
                snap.counters.storeReply(s);
            }
            std::printf("ok\n");
            std::fflush(stdout);
        }
    });
    return loop.run() < 0 ? 1 : 0;
}

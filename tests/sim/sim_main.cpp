// prom-sim: runs the deterministic cluster simulation (tests/sim/cluster_sim.hpp).
//   prom-sim --first 0 --seeds 10000      a batch; exit 1 if any seed fails
//   prom-sim --seed 1234 [--trace]        one seed; a failure prints its shrunk schedule and trace
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "sim/cluster_sim.hpp"

namespace {

bool g_fence = true;
bool g_fast = false;

void replay(std::uint64_t seed, int replicas, bool showTrace) {
    prom::sim::Options o;
    o.seed = seed;
    o.replicas = replicas;
        o.fence = g_fence;
        o.fast = g_fast;
    auto first = prom::sim::run(o);
    if (first.ok) {
        std::printf("seed %llu: ok (%llu events, %llu activations)\n%s", static_cast<unsigned long long>(seed),
                    static_cast<unsigned long long>(first.events), static_cast<unsigned long long>(first.activations),
                    first.schedule.c_str());
        if (showTrace) {
            o.trace = true;
            for (const auto& l : prom::sim::run(o).trace) std::printf("%s\n", l.c_str());
        }
        return;
    }
    std::printf("seed %llu FAILED %s\n", static_cast<unsigned long long>(seed), first.failure.c_str());
    auto shrunk = prom::sim::shrink(o);
    shrunk.trace = true;
    auto s = prom::sim::run(shrunk);
    std::printf("shrunk to %zu of %zu faults: %s\n%s", s.faults - shrunk.skipFaults.size(), s.faults, s.failure.c_str(),
                s.schedule.c_str());
    if (showTrace)
        for (const auto& l : s.trace) std::printf("%s\n", l.c_str());
    else
        std::printf("(add --trace for the full event trace)\n");
}

}  // namespace

int main(int argc, char** argv) {
    std::uint64_t first = 0, seeds = 1000;
    long long single = -1;
    int replicas = 0;
    bool trace = false;
    for (int i = 1; i < argc; ++i) {
        auto next = [&] {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "prom-sim: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return std::strtoull(argv[++i], nullptr, 10);
        };
        if (!std::strcmp(argv[i], "--seed")) single = static_cast<long long>(next());
        else if (!std::strcmp(argv[i], "--first")) first = next();
        else if (!std::strcmp(argv[i], "--seeds")) seeds = next();
        else if (!std::strcmp(argv[i], "--replicas")) replicas = static_cast<int>(next());
        else if (!std::strcmp(argv[i], "--trace")) trace = true;
        else if (!std::strcmp(argv[i], "--no-fence")) g_fence = false;
        else if (!std::strcmp(argv[i], "--fast")) g_fast = true;
        else {
            std::fprintf(stderr, "usage: prom-sim [--seed N [--trace]] [--first N --seeds COUNT] [--replicas 3|5] [--no-fence] [--fast]\n");
            return 2;
        }
    }
    if (single >= 0) {
        replay(static_cast<std::uint64_t>(single), replicas, trace);
        prom::sim::Options o;
        o.seed = static_cast<std::uint64_t>(single);
        o.replicas = replicas;
        o.fence = g_fence;
        o.fast = g_fast;
        return prom::sim::run(o).ok ? 0 : 1;
    }
    auto t0 = std::chrono::steady_clock::now();
    std::uint64_t failed = 0, events = 0, activations = 0, stale = 0, takeovers = 0;
    for (std::uint64_t s = first; s < first + seeds; ++s) {
        prom::sim::Options o;
        o.seed = s;
        o.replicas = replicas;
        o.fence = g_fence;
        o.fast = g_fast;
        auto out = prom::sim::run(o);
        events += out.events;
        activations += out.activations;
        stale += out.staleReplies;
        takeovers += out.takeovers;
        if (!out.ok) {
            if (++failed <= 10)
                std::printf("seed %llu FAILED %s\n  replay: prom-sim --seed %llu --trace\n", static_cast<unsigned long long>(s),
                            out.failure.c_str(), static_cast<unsigned long long>(s));
        }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("prom-sim: seeds %llu..%llu: %llu failed, %llu events, %llu activations, %llu stale replies ignored, %llu takeovers, %.1f s\n",
                static_cast<unsigned long long>(first), static_cast<unsigned long long>(first + seeds - 1),
                static_cast<unsigned long long>(failed), static_cast<unsigned long long>(events),
                static_cast<unsigned long long>(activations), static_cast<unsigned long long>(stale), static_cast<unsigned long long>(takeovers), secs);
    return failed ? 1 : 0;
}

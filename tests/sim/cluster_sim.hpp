#pragma once
// Deterministic simulation of whole prom clusters (issue #10): N real core::Election instances,
// each on its own drifting clock, against an in-memory model of the etcd semantics prom relies
// on, driven by one seeded scheduler that loses, delays, reorders and duplicates messages,
// partitions replicas from the store, crashes, restarts and freezes them, changes the store
// leader and sends operator requests. Checkers run on the simulated real time line.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace prom::sim {

struct Options {
    std::uint64_t seed = 1;
    int replicas = 3;  ///< 0: chosen by the seed (3 or 5)
    /** Faults of the generated schedule to leave out (by index): used to shrink a failure. */
    std::set<std::size_t> skipFaults;
    /** Keep a readable trace of every delivered event and effect (slow: for replays). */
    bool trace = false;
    /** Model the fence held by PID 1 (prom@.service): off shows what prom alone cannot cover. */
    bool fence = true;
    /** Fast mode: peers heartbeat each other through a simulated peer network (loss, delay,
     *  partitions both ways and one way), takeovers by withdrawal; with some seeds a witness. */
    bool fast = false;
};

struct Outcome {
    bool ok = true;
    std::string failure;             ///< first violated property, with the simulated time
    std::vector<std::string> trace;  ///< when Options::trace
    std::size_t faults = 0;          ///< faults in the generated schedule
    std::uint64_t events = 0;        ///< events delivered to cores
    std::uint64_t staleReplies = 0;  ///< replies the cores ignored as not current (when counted)
    std::uint64_t activations = 0;   ///< active intervals begun
    std::string schedule;            ///< the fault schedule, one per line
    std::uint64_t takeovers = 0;     ///< fast mode: guarded deletes of a withdrawn fast key sent
};

/** Runs one seed to the end (or to its first violation). Same options, same outcome. */
Outcome run(const Options& options);

/** Shrinks a failing seed: the smallest set of its faults (greedy) that still fails. */
Options shrink(const Options& failing);

}  // namespace prom::sim

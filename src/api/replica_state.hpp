#pragma once
// What the org.prom.Prom1.Replica properties show, without the D-Bus headers: the daemon's
// status publisher fills it, api::DbusReplica publishes it.
#include <cstdint>
#include <string>

namespace prom::api {

struct ReplicaState {
    std::string role = "starting";
    std::string leader;
    std::uint64_t fencingToken = 0;
    bool storeHealthy = false;
    bool paused = false;
    std::uint64_t lastTransitionUSec = 0;
    std::string lastError;
    /** CLOCK_REALTIME µs since lastError has held its text (first occurrence); 0 when it is empty. */
    std::uint64_t lastErrorUSec = 0;
    std::string mode = "lease";     ///< fast mode: "fast" (prom(8) FAST MODE)
    std::uint32_t peerSupport = 0;  ///< fast mode: peers supporting this replica's epoch
    bool operator==(const ReplicaState&) const = default;
};

}  // namespace prom::api

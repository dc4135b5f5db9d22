#pragma once
// promctl -c CONFIG: the cluster seen and moved through the store, from any node (promctl(1)).
// status reads every configured replica's member key; switchover, resign and pause/resume
// write a request (or the cluster pause) that the replica it names carries out, and wait.
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "config/config.hpp"

namespace prom::ctl {

/** What a replica's daemon on this node said over D-Bus (status's LOCAL column). */
struct LocalDetail {
    bool answered = false;
    std::string error;  ///< why it did not answer
    std::string role;
    bool storeHealthy = false;
    std::string lastError;
    std::uint64_t lastErrorUsec = 0;
};

int clusterStatus(const config::Config& c, std::chrono::milliseconds timeout, bool asJson,
                  const std::map<std::string, LocalDetail>& local);
/** target "" = the best passive (the active chooses). */
int clusterSwitchover(const config::Config& c, const std::string& target, std::chrono::milliseconds timeout);
int clusterResign(const config::Config& c, std::chrono::milliseconds timeout);
/** cluster: the cluster-wide pause (control/pause); else replica's own pause, by request. */
int clusterPause(const config::Config& c, bool pause, bool cluster, const std::string& replica,
                 std::chrono::milliseconds timeout);

}  // namespace prom::ctl

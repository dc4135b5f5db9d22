#pragma once
// promctl's view of a whole cluster, read from the store (etcd) with the replicas' own config:
// which configured replicas are up (their member key exists), who holds the leader key and with
// which fencing token. Works from any node that can reach the store.
#include <chrono>
#include <cstdint>
#include <set>
#include <string>

#include "common/result.hpp"
#include "config/config.hpp"

namespace prom::ctl {

struct ClusterView {
    std::string endpoint;            ///< the endpoint that answered
    std::set<std::string> up;        ///< replicas whose member key exists
    std::string leader;              ///< holder of the leader key, "" = none
    std::string handoverTo;          ///< successor named by a switchover in progress
    std::int64_t token = 0;          ///< the leader key's create revision
};

/** Reads the cluster from the first endpoint that answers (etcd backend only). */
Result<ClusterView> readCluster(const config::Config& config, const std::string& password, std::chrono::milliseconds timeout);

}  // namespace prom::ctl

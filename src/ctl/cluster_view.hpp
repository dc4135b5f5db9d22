#pragma once
// promctl's view of a whole cluster, read from the store with the replicas' own config (-c):
// which configured replicas are up and what they say of themselves, who holds the leader key
// with which fencing token, and (etcd) the control keys. Works from any node that can reach
// the store; reads only (promctl never joins an election).
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "common/result.hpp"
#include "config/config.hpp"
#include "store/control.hpp"

namespace prom::ctl {

struct ClusterView {
    std::string store;                            ///< what answered, for the header line
    std::map<std::string, store::MemberInfo> up;  ///< replicas alive in the store, by id
    std::string leader;                           ///< holder of the leader key, "" = none
    std::string handoverTo;                       ///< successor named by a switchover in progress
    std::int64_t token = 0;                       ///< the leader's fencing token
    bool hasControl = false;                      ///< the backend keeps control keys (etcd)
    store::ControlState control;                  ///< cluster pause, requests, replies
};

class EtcdSession;

/** Reads the cluster (etcd: leader, members and control keys at one go). */
Result<ClusterView> readCluster(const config::Config& config, std::chrono::milliseconds timeout);
/** The same on an open session (a command that polls the cluster while it waits). */
Result<ClusterView> readCluster(EtcdSession& session, const config::Config& config);

}  // namespace prom::ctl

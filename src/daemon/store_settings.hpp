#pragma once
// The store's settings from prom.conf, for the daemon and for promctl -c (one reading of
// [store] and the election's TTL, so that promctl talks to the store as the replicas do).
#include <string>

#include "config/config.hpp"
#include "store/etcd.hpp"
#include "store/http.hpp"
#include "store/music.hpp"

namespace prom::daemon {

store::HttpOptions httpOptions(const config::Config& c);
/** self = the replica id (promctl: a name that is never a replica's). */
store::EtcdSettings etcdSettings(const config::Config& c, const std::string& self);
store::MusicSettings musicSettings(const config::Config& c, const std::string& self);

}  // namespace prom::daemon

#include "daemon/store_settings.hpp"

#include <algorithm>

namespace prom::daemon {

using namespace std::chrono_literals;

store::HttpOptions httpOptions(const config::Config& c) {
    return store::HttpOptions{c.store.connectTimeout, c.store.caFile, c.store.certFile, c.store.keyFile};
}

store::EtcdSettings etcdSettings(const config::Config& c, const std::string& self) {
    store::EtcdSettings es;
    es.endpoints = c.store.endpoints;
    es.prefix = c.store.prefix;
    es.app = c.appName;
    es.self = self;
    es.user = c.store.userid;
    if (!es.user.empty()) es.password = config::storePassword(c.store);
    auto ttl = core::Duration(config::leaseTtlSeconds(c.election) * 1000);
    es.requestTimeout = std::clamp<std::chrono::milliseconds>(core::keepalivePeriod(ttl), 500ms, 2000ms);
    es.leaseTtl = ttl;  // bounds the TTL a store may report for a resumed lease too
    return es;
}

store::MusicSettings musicSettings(const config::Config& c, const std::string& self) {
    store::MusicSettings ms;
    for (const auto& l : c.store.endpoints) ms.locations.push_back(store::musicBaseUrl(l, c.store.musicVersion));
    ms.app = c.appName;
    ms.self = self;
    ms.replicas = c.replicas;
    ms.aid = c.store.aid;
    ms.ns = c.store.ns;
    ms.user = c.store.userid;
    if (!ms.user.empty()) ms.password = config::storePassword(c.store);
    ms.basicAuth = c.store.musicBasicAuth;
    // PROM: music-connection-timeout-ms is the connect and the read timeout.
    ms.requestTimeout = c.store.connectTimeout;
    ms.peerTimeout = c.election.timeout;
    ms.pollInterval = c.election.monitorInterval;
    return ms;
}

}  // namespace prom::daemon

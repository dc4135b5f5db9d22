// Cross-field rules an operator would otherwise learn in production.
#include <set>

#include "config/config.hpp"

namespace prom::config {
namespace {

bool allIn(const std::string& s, const std::string& extra) {
    for (unsigned char ch : s)
        if (!std::isalnum(ch) && extra.find(static_cast<char>(ch)) == std::string::npos) return false;
    return !s.empty();
}

std::string ms(Millis m) { return std::to_string(m.count()) + " ms"; }

}  // namespace

void validateFastMode(Raw& raw, Sink& sink);

void validate(Raw& raw, const std::string& selfId, Sink& sink) {
    Config& c = raw.config;
    const bool music = c.store.backend == Backend::Music;

    if (c.appName.empty())
        sink.error(c.locate("app-name"), raw.name("app-name") + " must be set: it names the election");
    else if (!allIn(c.appName, music ? "_" : "_.-"))
        sink.error(c.locate("app-name"), raw.name("app-name") + " = \"" + c.appName + "\" may contain only letters, digits" +
                                             (music ? " and _ (it names the MUSIC keyspace prom_APP)" : ", _ . and -"));

    if (c.replicas.empty()) sink.error(c.locate("replicas"), raw.name("replicas") + " must list at least one replica id");
    std::set<std::string> ids;
    for (const auto& id : c.replicas) {
        if (!allIn(id, "_.-"))
            sink.error(c.locate("replicas"), "replica id \"" + id + "\" may contain only letters, digits, _ . and -");
        else if (!ids.insert(id).second)
            sink.error(c.locate("replicas"), "replica id \"" + id + "\" is listed twice in " + raw.name("replicas"));
    }
    if (!selfId.empty() && !c.replicas.empty() && !ids.count(selfId))
        sink.error(c.locate("replicas"), "this replica's id \"" + selfId + "\" (--id) is not in " + raw.name("replicas"));
    for (const auto& [id, o] : raw.overrides)
        if (!ids.count(id))
            sink.error(c.locate("replica." + id), "settings for replica \"" + id + "\", which is not in " + raw.name("replicas"));

    for (const auto& id : c.replicas) {
        ReplicaSettings s = c.defaults;
        if (auto it = raw.overrides.find(id); it != raw.overrides.end()) {
            auto& set = raw.overridden[id];
            if (set["ensure-active"]) s.ensureActive = it->second.ensureActive;
            if (set["ensure-passive"]) s.ensurePassive = it->second.ensurePassive;
            if (set["restart-prom"]) s.restartProm = it->second.restartProm;
            s.priority = it->second.priority;
        }
        s.ensureActive = s.ensureActive.expanded(id);
        s.ensurePassive = s.ensurePassive.expanded(id);
        s.restartProm = s.restartProm.expanded(id);
        Location where = c.where.count("replica." + id) ? c.locate("replica." + id) : c.locate("actions");
        const bool json = raw.spelled.count("replicas") > 0;
        if (s.ensureActive.kind == Action::Kind::None)
            sink.error(where, "replica \"" + id + "\" has no ensure-active action (" +
                                  (json ? "\"ensure-active-" + id + "\"" : "[actions] or [replica." + id + "] ensure-active") + ")");
        if (s.ensurePassive.kind == Action::Kind::None)
            sink.error(where, "replica \"" + id + "\" has no ensure-passive action (" +
                                  (json ? "\"ensure-passive-" + id + "\"" : "[actions] or [replica." + id + "] ensure-passive") + ")");
        c.replica[id] = s;
    }

    const auto& e = c.election;
    const std::string timeoutName = raw.name("election.timeout-ms");
    if (e.monitorInterval >= e.timeout)
        sink.error(c.locate("election.monitor-interval-ms"),
                   raw.name("election.monitor-interval-ms") + " (" + ms(e.monitorInterval) + ") must be shorter than " +
                       timeoutName + " (" + ms(e.timeout) + ")");
    // The active renews its lease every TTL/3; its deadline (last acknowledged renewal + TTL -
    // margin) must leave at least one renewal period, or it would demote while healthy.
    const Millis ttl(leaseTtlSeconds(e) * 1000);
    const Millis keepalive = ttl / 3;
    if (e.demoteMargin >= ttl - keepalive)
        sink.error(c.locate("election.demote-margin-ms"),
                   "election.demote-margin-ms (" + ms(e.demoteMargin) + ") must be shorter than two thirds of the lease TTL (" +
                       ms(ttl - keepalive) + "), or the active demotes between two healthy keepalives");
    if (!music) {
        if (e.timeout.count() % 1000 != 0)
            sink.warning(c.locate("election.timeout-ms"), timeoutName + " = " + ms(e.timeout) +
                                                              " is rounded up to a whole-second etcd lease TTL of " +
                                                              std::to_string(ttl.count() / 1000) + " s");
        if (ttl < Millis(2000))
            sink.warning(c.locate("election.timeout-ms"),
                         "etcd grants at least ceil(1.5 x its --election-timeout) seconds (2 s by default); with default etcd "
                         "settings the effective lease TTL is 2 s, and prom uses the TTL etcd grants");
    }
    if (e.demoteMargin < c.actions.timeout)
        sink.warning(c.locate("election.demote-margin-ms"),
                     "election.demote-margin-ms (" + ms(e.demoteMargin) + ") is shorter than " + raw.name("actions.timeout-ms") +
                         " (" + ms(c.actions.timeout) +
                         "): when the active loses the store, a passive may take over while a slow ensure-passive still runs");

    if (c.store.endpoints.empty())
        sink.error(c.locate("store.endpoints"), raw.name("store.endpoints") + " must list at least one " + (music ? "MUSIC location" : "etcd endpoint"));
    std::set<std::string> eps;
    for (const auto& ep : c.store.endpoints) {
        if (ep.empty()) {
            sink.error(c.locate("store.endpoints"), raw.name("store.endpoints") + " contains an empty entry");
            continue;
        }
        if (!eps.insert(ep).second)
            sink.error(c.locate("store.endpoints"), "endpoint \"" + ep + "\" is listed twice");
        bool url = ep.starts_with("http://") || ep.starts_with("https://");
        if (!music && !url)
            sink.error(c.locate("store.endpoints"), "etcd endpoint \"" + ep + "\" must be a URL like http://127.0.0.1:2379");
        if (url && ep.find("://") + 3 >= ep.size())
            sink.error(c.locate("store.endpoints"), "endpoint \"" + ep + "\" has no host");
    }
    if (!c.store.passwordFile.empty() && !c.store.password.empty())
        sink.error(c.locate("store.password-file"), "give the store password either inline or in password-file, not both");
    if (!music && c.store.prefix.empty())
        sink.error(c.locate("store.prefix"), "store.prefix must not be empty (try \"/prom\")");
    if ((c.store.certFile.empty()) != (c.store.keyFile.empty()))
        sink.error(c.locate(c.store.certFile.empty() ? "store.key-file" : "store.cert-file"),
                   "store.cert-file and store.key-file must be given together");
    if (!music && (!c.store.aid.empty() || !c.store.ns.empty()))
        sink.warning(c.locate(c.store.aid.empty() ? "store.namespace" : "store.aid"), "store.aid and store.namespace are used by the music backend only");
    validateFastMode(raw, sink);
}

// ---- fast mode (prom(8) FAST MODE: the timing rules the peer-support argument needs) ----

void validateFastMode(Raw& raw, Sink& sink) {
    Config& c = raw.config;
    for (auto& [id, s] : c.replica) {
        if (auto it = raw.overrides.find(id); it != raw.overrides.end()) {
            s.address = it->second.address;
            s.witness = it->second.witness;
        }
    }
    const auto& e = c.election;
    const bool fast = e.mode == ElectionSettings::Mode::Fast;
    if (!fast) {
        for (const auto& [id, s] : c.replica)
            if (s.witness)
                sink.error(c.locate("replica." + id), "[replica." + id + "] witness = true needs election.mode = \"fast\"");
        return;
    }
    if (c.store.backend != Backend::Etcd)
        sink.error(c.locate("election.mode"), "election.mode = \"fast\" needs store.backend = \"etcd\"");
    if (e.heartbeat < Millis(5))
        sink.error(c.locate("election.heartbeat-ms"), "election.heartbeat-ms (" + ms(e.heartbeat) + ") must be at least 5 ms");
    // Eight heartbeats per support period: a few lost datagrams must not cost the active its role.
    if (e.support < 8 * e.heartbeat)
        sink.error(c.locate("election.support-ms"), "election.support-ms (" + ms(e.support) + ") must be at least 8 x election.heartbeat-ms (" +
                                                        ms(8 * e.heartbeat) + "): raise support-ms or lower heartbeat-ms");
    const Millis ttl(leaseTtlSeconds(e) * 1000);
    if (e.support >= ttl - e.demoteMargin)
        sink.error(c.locate("election.support-ms"), "election.support-ms (" + ms(e.support) + ") must be shorter than the lease deadline (TTL - demote-margin = " +
                                                        ms(ttl - e.demoteMargin) + "): lower support-ms or raise election.timeout-ms");
    std::set<std::string> addresses;
    int voters = 0, candidates = 0;
    for (const auto& id : c.replicas) {
        const auto& s = c.replica[id];
        ++voters;
        if (!s.witness) ++candidates;
        Location where = c.where.count("replica." + id) ? c.locate("replica." + id) : c.locate("election.mode");
        if (s.address.empty())
            sink.error(where, "[replica." + id + "] address (UDP host:port) is required with election.mode = \"fast\"");
        else if (s.address.rfind(':') == std::string::npos)
            sink.error(where, "[replica." + id + "] address = \"" + s.address + "\" must be host:port");
        else if (!addresses.insert(s.address).second)
            sink.error(where, "[replica." + id + "] address = \"" + s.address + "\" is used by another replica");
        if (id.size() > 32) sink.error(where, "replica id \"" + id + "\" is longer than 32 bytes, the limit of fast mode's peer datagrams");
    }
    if (candidates == 0) sink.error(c.locate("replicas"), "every replica is a witness: at least one must be able to become active");
    if (voters == 2)
        sink.warning(c.locate("replicas"), "fast mode with two replicas needs a third vote: add a witness replica ([replica.ID] witness = true), "
                                           "or a majority is lost with either replica");
}

}  // namespace prom::config

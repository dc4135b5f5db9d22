#include "daemon.hpp"

#include <sys/stat.h>

#include <csignal>
#include <deque>
#include <fstream>
#include <sstream>

#include "actions/unit_runner.hpp"
#include "api/dbus_replica.hpp"
#include "common/log.hpp"
#include "core/election.hpp"
#include "sd/event_loop.hpp"
#include "sd/fence.hpp"
#include "sd/notifier.hpp"
#include "store/etcd.hpp"
#include "store/music.hpp"

namespace prom {
namespace {

using namespace std::chrono_literals;

std::string runtimeDirectory(const std::string& id) {
    // systemd sets RUNTIME_DIRECTORY from RuntimeDirectory=prom/%i (colon-separated if several).
    if (const char* d = std::getenv("RUNTIME_DIRECTORY"); d && *d) {
        std::string s(d);
        return s.substr(0, s.find(':'));
    }
    return "/run/prom/" + id;
}

void mkdirs(const std::string& path) {
    for (std::size_t pos = 1; pos != std::string::npos;) {
        pos = path.find('/', pos + 1);
        mkdir(path.substr(0, pos).c_str(), 0750);
    }
}

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

std::string storePassword(const config::StoreSettings& s) {
    if (!s.passwordFile.empty()) return readFile(s.passwordFile);
    if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY")) {
        std::string p = std::string(creds) + "/store-password";
        struct stat st {};
        if (stat(p.c_str(), &st) == 0) return readFile(p);
    }
    return s.password;
}

core::Params paramsFor(const config::Config& c, const std::string& id, bool passive) {
    core::Params p;
    p.self = id;
    p.requestedTtl = core::Duration(config::leaseTtlSeconds(c.election) * 1000);
    p.demoteMargin = c.election.demoteMargin;
    p.monitorInterval = c.election.monitorInterval;
    p.retryBackoff = c.actions.retryBackoff;
    p.retryAttempts = static_cast<int>(c.actions.retryAttempts);
    p.startPassive = c.election.startPassive || passive;
    int higher = 0;
    for (const auto& [other, s] : c.replica)
        if (s.priority > c.settingsOf(id).priority) ++higher;
    p.campaignDelay = core::kPriorityStep * higher;
    p.resignCooldown = c.election.timeout;
    p.storeRetry = std::min<core::Duration>(500ms, p.requestedTtl / 6);
    for (const auto& other : c.replicas)
        if (other != id && c.settingsOf(other).restartProm.kind != config::Action::Kind::None)
            p.restartablePeers.push_back(other);
    p.restartPeerBackoff = std::max<core::Duration>(30s, 3 * c.election.timeout);
    p.membersInterval = p.requestedTtl / 2;
    return p;
}

class Daemon {
public:
    Daemon(const DaemonOptions& o, config::Config c)
        : m_options(o),
          m_config(std::move(c)),
          m_http(m_loop, store::HttpOptions{m_config.store.connectTimeout, m_config.store.caFile, m_config.store.certFile,
                                            m_config.store.keyFile}),
          m_runner(m_loop),
          m_election(paramsFor(m_config, o.id, o.startPassive)),
          m_runtimeDir(runtimeDirectory(o.id)),
          m_fence({m_runtimeDir + "/fence", sd::Fence::armedPathFor(o.id), o.id, m_config.appName,
                   m_config.actions.timeout}) {
        if (m_config.store.backend == config::Backend::Music) {
            store::MusicSettings ms;
            for (const auto& l : m_config.store.endpoints) ms.locations.push_back(store::musicBaseUrl(l, m_config.store.musicVersion));
            ms.app = m_config.appName;
            ms.self = o.id;
            ms.replicas = m_config.replicas;
            ms.aid = m_config.store.aid;
            ms.ns = m_config.store.ns;
            ms.user = m_config.store.userid;
            if (!ms.user.empty()) ms.password = storePassword(m_config.store);
            ms.basicAuth = m_config.store.musicBasicAuth;
            // PROM: music-connection-timeout-ms is the connect and the read timeout.
            ms.requestTimeout = m_config.store.connectTimeout;
            ms.peerTimeout = m_config.election.timeout;
            ms.pollInterval = m_config.election.monitorInterval;
            m_store = std::make_unique<store::Music>(m_loop, m_http, ms);
            return;
        }
        store::EtcdSettings es;
        es.endpoints = m_config.store.endpoints;
        es.prefix = m_config.store.prefix;
        es.app = m_config.appName;
        es.self = o.id;
        es.user = m_config.store.userid;
        if (!es.user.empty()) es.password = storePassword(m_config.store);
        auto ttl = core::Duration(config::leaseTtlSeconds(m_config.election) * 1000);
        es.requestTimeout = std::clamp<std::chrono::milliseconds>(ttl / 3, 500ms, 2000ms);
        m_store = std::make_unique<store::Etcd>(m_loop, m_http, es);
    }

    int run() {
        if (m_options.bus != "none") {
            // Startup order (STYLE.md): object registered first, the name requested last, so
            // that whoever sees the name finds the object.
            try {
                m_bus = std::make_unique<api::BusConnection>(
                    m_loop, m_options.bus == "system" ? api::BusKind::System : api::BusKind::Session);
                m_api = std::make_unique<api::DbusReplica>(*m_bus, m_options.id, m_config.appName, handlers());
                m_bus->connection().requestName(api::busNameFor(m_options.id));
            } catch (const sdbus::Error& e) {
                log::error("D-Bus (" + m_options.bus + " bus): " + e.getName() + ": " + e.getMessage());
                return 1;
            }
            log::info("D-Bus API on the " + m_options.bus + " bus as " + api::busNameFor(m_options.id));
        }
        m_signals.push_back(m_loop.addSignal(SIGTERM, [this] { stop("SIGTERM"); }));
        m_signals.push_back(m_loop.addSignal(SIGINT, [this] { stop("SIGINT"); }));
        m_signals.push_back(m_loop.addSignal(SIGHUP, [this] { reload(); }));
        m_notifier.fitWatchdog(core::Duration(config::leaseTtlSeconds(m_config.election) * 1000),
                               m_config.election.demoteMargin);
        armWatchdog();
        mkdirs(m_runtimeDir);
        std::int64_t persisted = json::parseInt(readFile(leaseFile())).value_or(0);
        const bool music = m_config.store.backend == config::Backend::Music;
        log::info("prom " + m_options.id + " of " + m_config.appName + " starting: " + (music ? "MUSIC " : "etcd ") +
                  m_config.store.endpoints.front() + ", " + (music ? "timeout " : "lease TTL ") +
                  (music ? std::to_string(m_config.election.timeout.count()) + " ms"
                         : std::to_string(config::leaseTtlSeconds(m_config.election)) + " s") +
                  (persisted ? ", checking lease " + std::to_string(persisted) + " of the previous run" : ""));
        feed(core::Start{persisted});
        int r = m_loop.run();
        return r < 0 ? 1 : r;
    }

private:
    std::string leaseFile() const { return m_runtimeDir + "/lease"; }

    void stop(const char* why) {
        log::notice(std::string("received ") + why + ", stopping");
        m_notifier.stopping();
        feed(core::StopRequest{});
    }

    void reload() {
        m_notifier.reloading();
        auto r = config::load(m_options.configPath, m_options.id);
        for (const auto& d : r.diagnostics) log::warning("reload: " + d.format());
        if (!r.config) {
            log::error("reload: " + m_options.configPath + " has errors; keeping the running configuration");
        } else {
            if (r.config->store != m_config.store || r.config->election != m_config.election ||
                r.config->appName != m_config.appName || r.config->replicas != m_config.replicas)
                log::warning("reload: changes to app-name, replicas, [store] and [election] take effect at the next restart");
            m_config.actions = r.config->actions;
            m_config.replica = r.config->replica;
            log::notice("reload: actions reloaded from " + r.config->path);
        }
        m_notifier.ready();
    }

    api::ReplicaHandlers handlers() {
        api::ReplicaHandlers h;
        h.switchover = [this](const std::string& target) -> api::Verdict {
            log::notice("D-Bus: Switchover(\"" + target + "\") requested");
            switch (m_election.canSwitchover(target, m_config.replicas)) {
                case core::RequestResult::NotActive: return notActive();
                case core::RequestResult::InvalidArgs:
                    return {api::kErrorInvalidArgs, "\"" + target + "\" is not another replica of " + m_config.appName};
                case core::RequestResult::Accepted: break;
            }
            if (!m_storeHealthy) return {api::kErrorStoreUnavailable, "the store is unreachable: " + m_lastError};
            feed(core::SwitchoverRequest{target});
            return {};
        };
        h.resign = [this]() -> api::Verdict {
            log::notice("D-Bus: Resign() requested");
            if (m_election.canResign() != core::RequestResult::Accepted) return notActive();
            if (!m_storeHealthy) return {api::kErrorStoreUnavailable, "the store is unreachable: " + m_lastError};
            feed(core::ResignRequest{});
            return {};
        };
        h.pause = [this](bool pause) -> api::Verdict {
            log::notice(std::string("D-Bus: ") + (pause ? "Pause()" : "Resume()") + " requested");
            feed(core::PauseRequest{pause});
            return {};
        };
        return h;
    }

    api::Verdict notActive() const {
        return {api::kErrorNotActive, "replica " + m_options.id + " is " + core::toString(m_election.role()) + ", not active"};
    }

    // WATCHDOG=1 only while the loop is healthy: the timer firing proves the loop turns, and a
    // store reply (success or error) within the bound proves store I/O is not stalled — every
    // request has a timeout and keepalives go out every TTL/3.
    void armWatchdog() {
        std::uint64_t usec = sd::Notifier::watchdogUsec();
        if (!usec) return;
        auto period = std::chrono::microseconds(usec / 2);
        m_watchdog = m_loop.addTimer(sd::EventLoop::now() + std::chrono::duration_cast<core::Duration>(period), [this] {
            auto stalledFor = sd::EventLoop::now() - m_lastStoreReply;
            auto bound = 2 * core::Duration(config::leaseTtlSeconds(m_config.election) * 1000);
            if (m_lastStoreReply == core::TimePoint{} || stalledFor < bound)
                m_notifier.watchdog();
            else if (!m_watchdogWarned) {
                m_watchdogWarned = true;
                log::error("no reply from the store for " + std::to_string(stalledFor.count()) + " ms: stalled I/O, watchdog pings stop");
            }
            armWatchdog();
        });
    }

    void storeOk(bool ok, const std::string& error = "") {
        m_lastStoreReply = sd::EventLoop::now();
        m_watchdogWarned = false;
        m_storeHealthy = ok;
        if (!ok) m_lastError = error;
    }

    void publishState() {
        if (!m_api) return;
        api::ReplicaState s;
        s.role = core::toString(m_election.role());
        s.leader = m_election.leader();
        s.fencingToken = static_cast<std::uint64_t>(m_election.token());
        s.storeHealthy = m_storeHealthy;
        s.paused = m_election.paused();
        s.lastTransitionUSec = m_lastTransitionUSec;
        s.lastError = m_lastError;
        m_api->update(s);
    }

    void feed(core::Event event) {
        m_pending.push_back(std::move(event));
        if (m_feeding) return;  // an effect answered synchronously: handled after this one
        m_feeding = true;
        while (!m_pending.empty()) {
            core::Event e = std::move(m_pending.front());
            m_pending.pop_front();
            auto effects = m_election.handle(sd::EventLoop::now(), e);
            // The fence (prom(8), FENCE) follows role and deadline before any effect runs, so it
            // already covers an ensure-active that is about to start.
            m_fence.update(m_election.role(), m_election.deadline(), m_election.token(), m_election.leader(),
                           m_config.settingsOf(m_options.id).ensurePassive);
            for (auto& effect : effects) apply(effect);
        }
        m_feeding = false;
        publishState();
        if (auto next = m_election.nextWakeup())
            m_wake = m_loop.addTimer(*next, [this] { feed(core::Tick{}); });
        else
            m_wake.reset();
    }

    void apply(const core::Effect& effect) {
        std::visit([this](const auto& e) { on(e); }, effect);
    }

    void on(const core::GrantLease& e) {
        auto sent = sd::EventLoop::now();
        m_store->grantLease(e.ttl, [this, sent](Result<store::Lease> r) {
            storeOk(r.ok(), r ? "" : r.error().message);
            if (!r) {
                log::warning("lease grant failed: " + r.error().message);
                return feed(core::LeaseRequestFailed{0, r.error().message});
            }
            log::info("lease " + std::to_string(r->id) + " granted, TTL " + std::to_string(r->ttl.count() / 1000) + " s");
            feed(core::LeaseGranted{r->id, r->ttl, sent});
        });
    }
    void on(const core::KeepAlive& e) {
        auto sent = sd::EventLoop::now();
        std::int64_t lease = e.lease;
        m_store->keepAlive(lease, [this, sent, lease](Result<std::optional<core::Duration>> r) {
            storeOk(r.ok(), r ? "" : r.error().message);
            if (!r) {
                log::warning("keepalive failed: " + r.error().message);
                return feed(core::LeaseRequestFailed{lease, r.error().message});
            }
            if (!r.value()) {
                log::warning("lease " + std::to_string(lease) + " no longer exists in etcd");
                return feed(core::LeaseLost{lease});
            }
            feed(core::KeepaliveAcked{lease, *r.value(), sent});
        });
    }
    void on(const core::RevokeLease& e) {
        std::int64_t lease = e.lease;
        m_store->revokeLease(lease, [lease](Result<Ok> r) {
            if (!r) log::debug("revoking lease " + std::to_string(lease) + " failed: " + r.error().message);
        });
    }
    void on(const core::PersistLease& e) {
        std::string tmp = leaseFile() + ".tmp";
        {
            std::ofstream out(tmp, std::ios::trunc);
            if (e.lease) out << e.lease << "\n";
            if (!out) {
                log::warning("cannot write " + tmp + ": a restart of prom will fail over instead of resuming");
                return;
            }
        }
        std::rename(tmp.c_str(), leaseFile().c_str());
    }
    void on(const core::ReadLeader&) {
        m_store->readLeader([this](Result<core::LeaderRead> r) {
            storeOk(r.ok(), r ? "" : r.error().message);
            if (!r) {
                log::warning("reading the leader key failed: " + r.error().message);
                return feed(core::StoreRequestFailed{core::StoreRequestFailed::What::Read, r.error().message});
            }
            feed(r.value());
        });
    }
    void on(const core::Campaign& e) {
        m_store->campaign(e.lease, [this](Result<core::CampaignResult> r) {
            storeOk(r.ok(), r ? "" : r.error().message);
            if (!r) {
                log::warning("campaign failed: " + r.error().message);
                return feed(core::StoreRequestFailed{core::StoreRequestFailed::What::Campaign, r.error().message});
            }
            feed(r.value());
        });
    }
    void on(const core::Watch& e) {
        m_store->watchLeader(
            e.fromRevision, [this](const core::WatchEvent& ev) { feed(ev); },
            [this](const std::string& why) {
                log::info("leader watch closed (" + why + "); re-reading");
                feed(core::WatchBroken{why});
            });
    }
    void on(const core::DeleteLeader& e) {
        m_store->deleteLeader(e.createRevision, [this](Result<Ok> r) {
            if (!r) {
                log::warning(r.error().message);
                return feed(core::StoreRequestFailed{core::StoreRequestFailed::What::Resign, r.error().message});
            }
            feed(core::ResignDone{});
        });
    }
    void on(const core::MarkHandover& e) {
        m_store->markHandover(e.createRevision, e.lease, e.target, [this](Result<Ok> r) {
            if (!r) {
                log::warning("naming the switchover target in the leader key failed: " + r.error().message);
                return feed(core::StoreRequestFailed{core::StoreRequestFailed::What::Handover, r.error().message});
            }
            feed(core::HandoverMarked{});
        });
    }
    void on(const core::PutMember& e) {
        m_store->putMember(e.lease, [](Result<Ok> r) {
            if (!r) log::warning("writing the member key failed: " + r.error().message);
        });
    }
    void on(const core::ReadMembers&) {
        m_store->readMembers([this](Result<std::vector<std::string>> r) {
            if (!r) {
                log::debug("reading member keys failed: " + r.error().message);
                return feed(core::StoreRequestFailed{core::StoreRequestFailed::What::Members, r.error().message});
            }
            feed(core::MembersRead{r.value()});
        });
    }
    void on(const core::RunAction& e) {
        const auto& s = m_config.settingsOf(m_options.id);
        const config::Action& action = e.kind == core::ActionKind::EnsureActive    ? s.ensureActive
                                       : e.kind == core::ActionKind::EnsurePassive ? s.ensurePassive
                                                                                   : m_config.settingsOf(e.peer).restartProm;
        if (e.kind == core::ActionKind::RestartPeer)
            log::warning("replica " + e.peer + " has had no member key for longer than the timeout: running restart-prom");
        std::map<std::string, std::string> env{{"PROM_ROLE", core::toString(e.role)},
                                               {"PROM_PEER_ID", e.peer},
                                               {"PROM_REPLICA_ID", m_options.id},
                                               {"PROM_APP", m_config.appName},
                                               {"PROM_LEADER", e.leader},
                                               {"PROM_FENCING_TOKEN", std::to_string(e.token)}};
        std::string name = core::toString(e.kind);
        auto kind = e.kind;
        if (e.role == core::Role::Starting || e.role == core::Role::Stopping)
            // sd_notify(3): a slow action at start or stop must not hit TimeoutStartSec/StopSec.
            m_notifier.extendTimeout(static_cast<unsigned long long>(m_config.actions.timeout.count() + 5000) * 1000);
        log::debug("running " + name + ": " + action.describe());
        m_runner.run(name, action, env, m_config.actions.timeout,
                     [this, kind, name](core::ActionOutcome outcome, const std::string& detail) {
                         bool ok = outcome == core::ActionOutcome::AlreadyInMode || outcome == core::ActionOutcome::Switched;
                         if (!ok && outcome != core::ActionOutcome::Cancelled) log::warning(name + " failed: " + detail);
                         else if (outcome == core::ActionOutcome::Switched) log::info(name + ": " + detail);
                         feed(core::ActionFinished{kind, outcome, detail});
                     });
    }
    void on(const core::CancelAction&) { m_runner.cancel(); }
    void on(const core::PublishRole& e) {
        std::string token = std::to_string(e.token);
        log::setContext("PROM_ROLE", core::toString(e.role));
        log::write(log::Level::Notice,
                   std::string("role ") + core::toString(m_lastRole) + " -> " + core::toString(e.role) + " (token " + token +
                       ", leader " + (e.leader.empty() ? "none" : e.leader) + "): " + e.reason,
                   {{"MESSAGE_ID", log::kRoleChangedMessageId},
                    {"PROM_FENCING_TOKEN", token},
                    {"PROM_OLD_ROLE", core::toString(m_lastRole)}});
        std::string oldRole = core::toString(m_lastRole);
        m_lastRole = e.role;
        timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        m_lastTransitionUSec = static_cast<std::uint64_t>(ts.tv_sec) * 1000000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
        if (m_api) {
            publishState();
            m_api->roleChanged(oldRole, core::toString(e.role), static_cast<std::uint64_t>(e.token));
        }
        m_notifier.status(std::string(core::toString(e.role)) + ", leader " + (e.leader.empty() ? "none" : e.leader) +
                          ", token " + token);
        if (!m_ready && (e.role == core::Role::Passive || e.role == core::Role::Active)) {
            m_ready = true;
            m_notifier.ready();
        }
    }
    void on(const core::PublishLeader& e) {
        log::info("leader is " + (e.leader.empty() ? std::string("none") : e.leader) + " (token " + std::to_string(e.token) + ")");
    }
    void on(const core::PublishError& e) {
        log::warning(e.message);
        m_lastError = e.message;
    }
    void on(const core::Exit&) {
        log::notice("stopped");
        m_loop.exit(0);
    }

    DaemonOptions m_options;
    config::Config m_config;
    sd::EventLoop m_loop;
    store::Http m_http;
    std::unique_ptr<store::Store> m_store;
    actions::Runner m_runner;
    core::Election m_election;
    sd::Notifier m_notifier;
    std::string m_runtimeDir;
    sd::Fence m_fence;
    std::vector<sd::Source> m_signals;
    std::unique_ptr<api::BusConnection> m_bus;
    std::unique_ptr<api::DbusReplica> m_api;
    bool m_storeHealthy = false;
    sd::Source m_watchdog;
    core::TimePoint m_lastStoreReply{};
    bool m_watchdogWarned = false;
    std::string m_lastError;
    std::uint64_t m_lastTransitionUSec = 0;
    sd::Source m_wake;
    std::deque<core::Event> m_pending;
    bool m_feeding = false;
    bool m_ready = false;
    core::Role m_lastRole = core::Role::Starting;
};

}  // namespace

int runDaemon(const DaemonOptions& options, config::Config config) {
    log::setContext("PROM_APP", config.appName);
    log::setContext("PROM_REPLICA", options.id);
    log::setContext("PROM_ROLE", "starting");
    Daemon d(options, std::move(config));
    return d.run();
}

}  // namespace prom

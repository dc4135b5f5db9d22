#include "daemon.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "actions/unit_runner.hpp"
#include "api/dbus_replica.hpp"
#include "common/log.hpp"
#include "core/election.hpp"
#include "daemon/action_driver.hpp"
#include "daemon/status_publisher.hpp"
#include "daemon/store_driver.hpp"
#include "daemon/store_settings.hpp"
#include "http/server.hpp"
#include "prom/version.hpp"
#include "peer/transport.hpp"
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
    // ---- fast mode (prom(8) FAST MODE) ----
    if (c.election.mode == config::ElectionSettings::Mode::Fast) {
        p.fast = true;
        for (const auto& other : c.replicas)
            if (other != id) p.peers.push_back(other);
        p.witness = c.settingsOf(id).witness;
        p.heartbeat = c.election.heartbeat;
        p.support = core::SupportTiming{c.election.support};
        // The holder stops a quarter of support-ms before its support can run out: the hard
        // stop (ensure-passive) must finish within that.
        p.stopMargin = c.election.support / 4;
    }
    return p;
}

/** Fast mode's shared peer key: peer-key-file, else the systemd credential "peer-key". */
Result<std::string> peerKey(const config::ElectionSettings& e) {
    std::string path = e.peerKeyFile;
    if (path.empty()) {
        if (const char* creds = std::getenv("CREDENTIALS_DIRECTORY")) path = std::string(creds) + "/peer-key";
    }
    if (path.empty()) return Error{"fast mode needs a peer key: set election.peer-key-file or the systemd credential peer-key"};
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return Error{"cannot read the peer key " + path};
    std::string key = config::readTrimmedFile(path);
    if (key.size() < 16) return Error{"the peer key " + path + " is shorter than 16 bytes"};
    return key;
}

/** The lease file: "LEASE [DEADLINE_MS]" where the deadline is on the daemon's monotonic clock
 *  (it survives a restart of prom, not of the machine, as $RUNTIME_DIRECTORY does). */
struct PersistedLease {
    std::int64_t lease = 0;
    std::optional<core::TimePoint> deadline;
};

PersistedLease parseLeaseFile(const std::string& text) {
    PersistedLease p;
    std::istringstream in(text);
    long long lease = 0, deadline = 0;
    if (!(in >> lease) || lease <= 0) return p;
    p.lease = lease;
    if (in >> deadline && deadline > 0) p.deadline = core::TimePoint(core::Duration(deadline));
    return p;
}

std::string hostname() {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0) return "";
    return name;
}

class Daemon {
public:
    Daemon(const DaemonOptions& o, config::Config c)
        : m_options(o),
          m_config(std::move(c)),
          m_http(m_loop, daemon::httpOptions(m_config)),
          m_runner(m_loop),
          m_election(paramsFor(m_config, o.id, o.startPassive)),
          m_runtimeDir(runtimeDirectory(o.id)),
          m_fence({m_runtimeDir + "/fence", sd::Fence::armedPathFor(o.id), o.id, m_config.appName, m_config.actions.timeout}),
          m_status(statusSinks()) {
        const bool music = m_config.store.backend == config::Backend::Music;
        if (music)
            m_store = std::make_unique<store::Music>(m_loop, m_http, daemon::musicSettings(m_config, o.id));
        else
            m_store = std::make_unique<store::Etcd>(m_loop, m_http, daemon::etcdSettings(m_config, o.id));
        auto feed = [this](core::Event e) { this->feed(std::move(e)); };
        m_storeDriver = std::make_unique<daemon::StoreDriver>(
            *m_store, music ? "MUSIC" : "etcd", feed, [] { return sd::EventLoop::now(); },
            [this](bool healthy, const std::string& error) { m_status.storeHealth(healthy, error); });
        m_actionDriver = std::make_unique<daemon::ActionDriver>(
            m_runner, m_config, o.id, feed, [this](unsigned long long usec) { m_notifier.extendTimeout(usec); });
        m_storeDriver->describeMember([this] { return memberInfo(); });
        m_store->onControl([this](const store::ControlState& c) { onControl(c); });
        // Metrics (/metrics): store round trips and action runs.
        m_storeDriver->observeLatency([this](core::Duration d) { m_counters.storeReply(std::chrono::duration<double>(d).count()); });
        m_actionDriver->observe([] { return sd::EventLoop::now(); }, [this](const std::string& name, bool ok, core::Duration took) {
            m_counters.actionFinished(name, ok, std::chrono::duration<double>(took).count());
        });
        // ---- fast mode: the UDP peer transport (opened in run()) ----
        if (m_config.election.mode == config::ElectionSettings::Mode::Fast) {
            peer::Settings ps;
            ps.self = o.id;
            ps.listen = m_config.settingsOf(o.id).address;
            for (const auto& other : m_config.replicas)
                if (other != o.id) ps.peers[other] = m_config.settingsOf(other).address;
            m_peer = std::make_unique<peer::Transport>(m_loop, std::move(ps), feed);
        }
    }

    int run() {
        // One prom per replica id on this node: a second one (another config, a typo) must not
        // take over the lease file or touch the running replica's keys.
        mkdirs(m_runtimeDir);
        if (auto held = lockReplica(); !held.empty()) {
            log::error(held);
            return 1;
        }
        if (m_options.bus != "none") {
            // Startup order (STYLE.md): object registered first, the name requested last, so
            // that whoever sees the name finds the object.
            try {
                m_bus = std::make_unique<sd::BusConnection>(
                    m_loop, m_options.bus == "system" ? sd::BusKind::System : sd::BusKind::Session);
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
        startHttp();
        m_notifier.fitWatchdog(core::Duration(config::leaseTtlSeconds(m_config.election) * 1000), m_config.election.demoteMargin);
        armWatchdog();
        if (m_peer) {
            auto key = peerKey(m_config.election);
            if (!key) {
                log::error(key.error().message);
                return 1;
            }
            m_peer->setKey(*key);
            if (auto opened = m_peer->open(); !opened) {
                log::error("fast mode: " + opened.error().message);
                return 1;
            }
            log::info("fast mode: peers on UDP " + m_config.settingsOf(m_options.id).address + ", heartbeat " +
                      std::to_string(m_config.election.heartbeat.count()) + " ms, support " +
                      std::to_string(m_config.election.support.count()) + " ms" +
                      (m_config.settingsOf(m_options.id).witness ? ", witness" : ""));
        }
        PersistedLease persisted = parseLeaseFile(config::readTrimmedFile(leaseFile()));
        const bool music = m_config.store.backend == config::Backend::Music;
        std::string previous;
        if (persisted.lease)
            previous = ", checking lease " + std::to_string(persisted.lease) + " of the previous run" +
                       (persisted.deadline ? " (it may have left the service active)" : "");
        log::info("prom " + m_options.id + " of " + m_config.appName + " starting: " + (music ? "MUSIC " : "etcd ") +
                  m_config.store.endpoints.front() + ", " + (music ? "timeout " : "lease TTL ") +
                  (music ? std::to_string(m_config.election.timeout.count()) + " ms"
                         : std::to_string(config::leaseTtlSeconds(m_config.election)) + " s") +
                  previous);
        feed(core::Start{persisted.lease, persisted.deadline});
        int r = m_loop.run();
        return r < 0 ? 1 : r;
    }

private:
    std::string leaseFile() const { return m_runtimeDir + "/lease"; }

    /** Takes $RUNTIME_DIRECTORY/lock for the life of the process; "" or why it cannot. */
    std::string lockReplica() {
        std::string path = m_runtimeDir + "/lock";
        int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) return "cannot open " + path + ": " + std::strerror(errno);
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            std::string other = config::readTrimmedFile(path);
            close(fd);
            return "replica " + m_options.id + " is already run by prom (pid " + (other.empty() ? "?" : other) + ", lock " + path +
                   "): not starting a second one";
        }
        std::string pid = std::to_string(getpid()) + "\n";
        if (ftruncate(fd, 0) != 0 || write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size()))
            log::warning("cannot write the pid to " + path);
        m_lockFd = fd;  // released by the kernel when prom exits, however it exits
        return "";
    }

    daemon::StatusSinks statusSinks() {
        daemon::StatusSinks s;
        s.properties = [this](const daemon::Status& st) {
            if (m_api) m_api->update(st);
        };
        s.roleChanged = [this](const std::string& oldRole, const std::string& newRole, std::uint64_t token) {
            ++m_counters.transitions;
            if (m_api) m_api->roleChanged(oldRole, newRole, token);
        };
        s.notify = [this](const std::string& line) { m_notifier.send(line); };
        s.realtimeUsec = [] {
            timespec ts{};
            clock_gettime(CLOCK_REALTIME, &ts);
            return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
        };
        return s;
    }

    // Health and metrics: optional for the HA role, so a failure to listen is only a warning.
    void startHttp() {
        const std::string& listen = m_config.settingsOf(m_options.id).httpListen;
        if (listen.empty()) return;
        m_httpServer = std::make_unique<http::Server>(m_loop, [this] { return snapshot(); });
        if (auto r = m_httpServer->start(listen); !r) {
            log::warning("http: " + r.error().message + "; /health, /active and /metrics are off for this run (set [http] listen or [replica." +
                         m_options.id + "] http-listen)");
            m_httpServer.reset();
            return;
        }
        log::info("http: /health, /active and /metrics on " + listen);
    }

    http::Snapshot snapshot() const {
        http::Snapshot s;
        s.app = m_config.appName;
        s.replica = m_options.id;
        s.version = kVersion;
        s.running = !m_stopping;
        s.role = core::toString(m_election.role());
        s.leader = m_election.leader();
        s.fencingToken = static_cast<std::uint64_t>(m_election.token());
        s.storeHealthy = m_storeDriver->healthy();
        s.paused = m_election.paused();
        s.lastErrorUSec = m_status.status().lastErrorUSec;
        if (m_election.role() == core::Role::Active)
            if (auto deadline = m_election.deadline())
                s.leaseRemainingSeconds = std::chrono::duration<double>(*deadline - sd::EventLoop::now()).count();
        s.counters = m_counters;
        return s;
    }

    void stop(const char* why) {
        m_stopping = true;
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
            // Retries, backoff, priorities and restart-prom peers apply now (prom.conf(5)).
            m_election.reconfigure(paramsFor(m_config, m_options.id, m_options.startPassive));
            log::notice("reload: actions reloaded from " + r.config->path + " (retries, backoff, priorities and restart-prom peers apply now)");
        }
        m_notifier.ready();
    }

    // The operator's requests, from D-Bus or (promctl -c, any node) from the store.
    api::Verdict switchover(const std::string& target) {
        switch (m_election.canSwitchover(target, m_config.replicas)) {
            case core::RequestResult::NotActive: return notActive();
            case core::RequestResult::Paused: return clusterPaused();
            case core::RequestResult::InvalidArgs:
                return {api::kErrorInvalidArgs, "\"" + target + "\" is not another replica of " + m_config.appName};
            case core::RequestResult::Accepted: break;
        }
        if (!m_storeDriver->healthy())
            return {api::kErrorStoreUnavailable, "the store is unreachable: " + m_storeDriver->lastError()};
        feed(core::SwitchoverRequest{target});
        return {};
    }

    api::Verdict resign() {
        switch (m_election.canResign()) {
            case core::RequestResult::NotActive:
            case core::RequestResult::InvalidArgs: return notActive();
            case core::RequestResult::Paused: return clusterPaused();
            case core::RequestResult::Accepted: break;
        }
        if (!m_storeDriver->healthy())
            return {api::kErrorStoreUnavailable, "the store is unreachable: " + m_storeDriver->lastError()};
        feed(core::ResignRequest{});
        return {};
    }

    api::Verdict pause(bool pause) {
        feed(core::PauseRequest{pause});
        return {};
    }

    api::ReplicaHandlers handlers() {
        api::ReplicaHandlers h;
        h.switchover = [this](const std::string& target) { return switchover(target); };
        h.resign = [this] { return resign(); };
        h.pause = [this](bool p) { return pause(p); };
        return h;
    }

    /** What the member key tells operators on other nodes (promctl -c status). */
    store::MemberInfo memberInfo() const {
        store::MemberInfo m;
        m.id = m_options.id;
        m.host = m_hostname;
        m.pid = getpid();
        m.role = core::toString(m_election.role());
        m.token = m_election.token();
        m.sinceUsec = m_status.status().lastTransitionUSec;
        m.version = kVersion;
        m.mode = m_config.election.mode == config::ElectionSettings::Mode::Fast ? "fast" : "lease";
        m.paused = m_election.paused();
        m.lastError = m_status.status().lastError;
        m.lastErrorUsec = m_status.status().lastErrorUSec;
        return m;
    }

    /** The store's control keys changed (etcd): the cluster pause, and requests for us. */
    void onControl(const store::ControlState& c) {
        if (c.pause.paused != m_election.clusterPaused()) {
            if (c.pause.paused)
                log::notice("cluster paused" + (c.pause.by.empty() ? std::string() : " by " + c.pause.by) +
                            " (control/pause in the store): no takeover, no demotion on failed checks");
            else
                log::notice("cluster pause ended");
            feed(core::PauseRequest{c.pause.paused, true});
        }
        for (auto it = m_answered.begin(); it != m_answered.end();)
            it = c.requests.count(*it) ? std::next(it) : m_answered.erase(it);
        for (const auto& [id, r] : c.requests) {
            if (m_answered.count(id)) continue;
            const bool forUs = r.op == store::ControlOp::Pause || r.op == store::ControlOp::Resume
                                   ? r.target == m_options.id
                                   : m_election.isAddressedAs(r.token);
            if (!forUs) continue;
            m_answered.insert(id);
            const std::string what = std::string(store::toString(r.op)) + (r.target.empty() ? "" : " " + r.target);
            log::notice("request " + id + " from " + (r.by.empty() ? "?" : r.by) + " through the store: " + what);
            api::Verdict v = r.op == store::ControlOp::Switchover ? switchover(r.target)
                             : r.op == store::ControlOp::Resign   ? resign()
                                                                  : pause(r.op == store::ControlOp::Pause);
            if (!v.errorName.empty()) log::warning("request " + id + " refused: " + v.message);
            m_store->answerRequest(r, store::ControlReply{id, v.errorName.empty(), v.message, v.errorName}, [id](Result<Ok> done) {
                if (!done) log::warning("answering request " + id + " failed: " + done.error().message);
            });
        }
    }

    api::Verdict clusterPaused() const {
        return {api::kErrorPaused, "the cluster is paused (control/pause in the store): nobody would take over; "
                                   "promctl -c CONFIG resume --cluster ends the pause"};
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
            core::TimePoint last = m_storeDriver->lastReply();
            auto stalledFor = sd::EventLoop::now() - last;
            auto bound = 2 * core::Duration(config::leaseTtlSeconds(m_config.election) * 1000);
            if (last == core::TimePoint{} || stalledFor < bound) {
                m_notifier.watchdog();
                m_watchdogWarned = false;
            } else if (!m_watchdogWarned) {
                m_watchdogWarned = true;
                log::error("no reply from the store for " + std::to_string(stalledFor.count()) + " ms: stalled I/O, watchdog pings stop");
            }
            armWatchdog();
        });
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
            m_fence.update(m_election.role(), m_election.fenceDeadline(), m_election.token(), m_election.leader(),
                           m_config.settingsOf(m_options.id).ensurePassive);
            for (auto& effect : effects) apply(effect);
        }
        m_feeding = false;
        m_status.refresh(m_election);
        m_storeDriver->memberChanged();
        if (auto next = m_election.nextWakeup())
            m_wake = m_loop.addTimer(*next, [this] { feed(core::Tick{}); });
        else
            m_wake.reset();
    }

    void apply(const core::Effect& effect) {
        if (m_storeDriver->apply(effect) || m_actionDriver->apply(effect) || m_status.apply(effect)) return;
        if (m_peer && m_peer->apply(effect)) return;  // fast mode
        if (auto* p = std::get_if<core::PersistLease>(&effect)) return persist(*p);
        if (std::holds_alternative<core::Exit>(effect)) {
            log::notice("stopped");
            m_loop.exit(0);
        }
    }

    void persist(const core::PersistLease& e) {
        std::string tmp = leaseFile() + ".tmp";
        {
            std::ofstream out(tmp, std::ios::trunc);
            if (e.lease) out << e.lease;
            if (e.lease && e.deadline) out << " " << e.deadline->time_since_epoch().count();
            out << "\n";
            if (!out) {
                log::warning("cannot write " + tmp + ": a restart of prom will fail over instead of resuming");
                return;
            }
        }
        std::rename(tmp.c_str(), leaseFile().c_str());
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
    daemon::StatusPublisher m_status;
    std::unique_ptr<daemon::StoreDriver> m_storeDriver;
    std::unique_ptr<daemon::ActionDriver> m_actionDriver;
    std::unique_ptr<peer::Transport> m_peer;  ///< fast mode only
    std::vector<sd::Source> m_signals;
    std::unique_ptr<sd::BusConnection> m_bus;
    std::unique_ptr<api::DbusReplica> m_api;
    sd::Source m_watchdog;
    bool m_watchdogWarned = false;
    sd::Source m_wake;
    std::deque<core::Event> m_pending;
    bool m_feeding = false;
    bool m_stopping = false;
    int m_lockFd = -1;
    std::string m_hostname = hostname();
    std::set<std::string> m_answered;  ///< store requests carried out, until their key goes
    http::Counters m_counters;
    std::unique_ptr<http::Server> m_httpServer;  // last: destroyed first, before the loop it uses
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

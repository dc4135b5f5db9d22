#include "ctl/cluster_commands.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <random>
#include <set>

#include "common/json.hpp"
#include "ctl/cluster_view.hpp"
#include "ctl/output.hpp"
#include "ctl/session.hpp"

namespace prom::ctl {
namespace {

using Millis = std::chrono::milliseconds;

/** How long switchover and resign wait for the new active at least (its ensure-active runs). */
constexpr Millis kMinWait{15000};
/** Polls of a wait start fast (a switchover takes tens of ms plus ensure-active) and back off. */
constexpr Millis kFirstPoll{10};
constexpr Millis kPoll{200};

bool known(const config::Config& c, const std::string& id) {
    return std::find(c.replicas.begin(), c.replicas.end(), id) != c.replicas.end();
}

/** The role the store shows for a replica: "down" without a member key; a member key of a
 *  prom that does not say its role is judged by the leader key. */
std::string roleOf(const ClusterView& v, const std::string& id) {
    auto it = v.up.find(id);
    if (it == v.up.end()) return "down";
    if (!it->second.role.empty()) return it->second.role;
    return id == v.leader ? "active" : "passive";
}

/** Exit status and summary for the cluster (promctl(1)): exactly one active = 0. */
int verdict(const ClusterView& v, const config::Config& c, std::string& summary) {
    std::vector<std::string> actives;
    for (const auto& id : c.replicas)
        if (roleOf(v, id) == "active") actives.push_back(id);
    if (actives.size() > 1) {
        summary = "several replicas say they are active:";
        for (const auto& a : actives) summary += " " + clean(a);
        return kExitSeveralActives;
    }
    if (v.leader.empty()) return summary = "no active replica", kExitNoActive;
    if (!v.up.count(v.leader))
        return summary = "no active replica: the leader " + clean(v.leader) + " is down (not alive in the store)",
               kExitNoActive;
    if (roleOf(v, v.leader) != "active")
        return summary = "no active replica yet: the leader " + clean(v.leader) + " is " + clean(roleOf(v, v.leader)),
               kExitNoActive;
    return summary = "active: " + clean(v.leader), 0;
}

std::string whoAmI() {
    std::string user;
    if (const char* sudo = std::getenv("SUDO_USER"); sudo && *sudo) user = sudo;
    if (user.empty())
        if (const passwd* pw = getpwuid(geteuid())) user = pw->pw_name;
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    return (user.empty() ? "?" : user) + "@" + host;
}

std::string requestId() {
    std::random_device rd;
    std::uniform_int_distribution<unsigned> hex(0, 15);
    std::string id;
    for (int i = 0; i < 16; ++i) id += "0123456789abcdef"[hex(rd)];
    return id;
}

/** The exit status of a write the store did not take: etcd refusing it (HTTP 403, "permission
 *  denied": the user's role may not write the prefix) is access denied, not an outage. */
int writeFailed(const Error& e) {
    return e.message.find("HTTP 403") != std::string::npos ? kExitAccessDenied : kExitStoreUnavailable;
}

double elapsedMs(TimePoint since) {
    return std::chrono::duration<double, std::milli>(sd::EventLoop::now() - since).count();
}

std::string pausedText(const store::ClusterPause& p) {
    std::string s = "the cluster is paused";
    if (!p.by.empty()) s += " by " + clean(p.by);
    if (p.sinceUsec) s += " since " + since(p.sinceUsec);
    return s;
}

/** A request through the store: written on a lease of promctl's own (so that it and its reply
 *  vanish when promctl is done or dies), then the cluster polled until done() says it is over. */
volatile std::sig_atomic_t g_interrupted = 0;

/** The request's lease lives while promctl waits: short, and renewed by the wait, so that a
 *  promctl killed mid-wait leaves no request behind for long; Ctrl-C withdraws it at once. */
constexpr Millis kRequestTtl{5000};
constexpr Millis kRequestRenew{1000};

class Request {
public:
    Request(EtcdSession& s, Millis wait) : m_s(s), m_wait(wait) {
        std::signal(SIGINT, [](int) { g_interrupted = 1; });
        std::signal(SIGTERM, [](int) { g_interrupted = 1; });
    }
    ~Request() {
        if (m_lease)
            (void)m_s.wait<Ok>([&](auto done) { m_s.etcd().revokeLease(m_lease, std::move(done)); });
    }

    Result<Ok> send(store::ControlRequest r) {
        auto lease = m_s.wait<store::Lease>([&](auto done) { m_s.etcd().grantLease(kRequestTtl, std::move(done)); });
        if (!lease) return lease.error();
        m_lease = lease->id;
        r.id = m_id = requestId();
        r.by = whoAmI();
        m_sent = m_renewed = sd::EventLoop::now();
        return m_s.wait<Ok>([&](auto done) { m_s.etcd().putRequest(r, m_lease, std::move(done)); });
    }

    /** Called by each poll of the wait: renews the lease about every second. */
    void keepAlive() {
        if (!m_lease || sd::EventLoop::now() - m_renewed < kRequestRenew) return;
        m_renewed = sd::EventLoop::now();
        auto r = m_s.wait<std::optional<core::Duration>>([&](auto done) { m_s.etcd().keepAlive(m_lease, std::move(done)); });
        if (r && !*r) std::fprintf(stderr, "promctl: warning: the request's lease expired; the request is gone\n");
    }

    const std::string& id() const { return m_id; }
    TimePoint sent() const { return m_sent; }
    /** The wait is over: timed out, or interrupted (then said, and the request withdrawn). */
    bool expired() const { return g_interrupted || sd::EventLoop::now() - m_sent >= m_wait; }

private:
    EtcdSession& m_s;
    Millis m_wait;
    std::int64_t m_lease = 0;
    std::string m_id;
    TimePoint m_sent{};
    TimePoint m_renewed{};
};

/** Exit status for an interrupted wait (128 + SIGINT), said once. */
int interrupted(const std::string& what) {
    std::fprintf(stderr, "promctl: %s interrupted: request withdrawn (it may have been carried out already)\n",
                 what.c_str());
    return 130;
}

/** 0 when there is no refusal (yet); else prints it and gives the exit status its error
 *  name has over D-Bus (promctl(1)). */
int refused(const ClusterView& v, const Request& r, const std::string& what) {
    auto it = v.control.replies.find(r.id());
    if (it == v.control.replies.end() || it->second.ok) return 0;
    const std::string& e = it->second.error;
    std::fprintf(stderr, "promctl: %s refused: %s%s\n", what.c_str(), clean(it->second.message).c_str(),
                 e.empty() ? "" : (" (" + clean(e) + ")").c_str());
    if (e == "org.prom.Prom1.Error.NotActive") return kExitNoActive;
    if (e == "org.prom.Prom1.Error.StoreUnavailable") return kExitStoreUnavailable;
    if (e == "org.prom.Prom1.Error.InvalidArgs" || e == "org.prom.Prom1.Error.Paused") return kExitInvalid;
    return kExitFailed;
}

Result<ClusterView> readOrSay(EtcdSession& s, const config::Config& c) {
    auto v = readCluster(s, c);
    if (!v) std::fprintf(stderr, "promctl: the store is unreachable: %s\n", clean(v.error().message).c_str());
    return v;
}

/** Waits for an active other than from with a newer token, after its ensure-active. */
int awaitNewActive(EtcdSession& s, const config::Config& c, Request& req, const std::string& what, const std::string& from,
                   std::int64_t token, const std::string& target) {
    for (Millis poll = kFirstPoll; !req.expired(); poll = std::min(poll * 2, kPoll)) {
        s.pause(poll);
        req.keepAlive();
        auto v = readCluster(s, c);
        if (!v) continue;  // a store blip while waiting: the deadline decides
        if (int code = refused(*v, req, what)) return code;
        if (v->leader.empty() || v->leader == from || v->token <= token || roleOf(*v, v->leader) != "active") continue;
        const double ms = elapsedMs(req.sent());
        if (!target.empty() && v->leader != target) {
            std::fprintf(stderr, "promctl: %s: %s -> %s (token %lld) in %.0f ms, not %s as asked\n", what.c_str(),
                         clean(from).c_str(), clean(v->leader).c_str(), static_cast<long long>(v->token), ms,
                         clean(target).c_str());
            return kExitFailed;
        }
        std::printf("%s -> %s (token %lld) in %.0f ms\n", clean(from).c_str(), clean(v->leader).c_str(),
                    static_cast<long long>(v->token), ms);
        return 0;
    }
    if (g_interrupted) return interrupted(what);
    auto v = readCluster(s, c);
    std::string now = !v ? "the store is unreachable" : v->leader.empty() ? "no leader" : "leader " + clean(v->leader);
    bool answered = v && v->control.replies.count(req.id());
    std::fprintf(stderr, "promctl: %s: no new active within %.0f ms (%s; %s)\n", what.c_str(), elapsedMs(req.sent()),
                 answered ? ("replica " + clean(from) + " accepted the request").c_str()
                          : ("replica " + clean(from) + " did not answer the request").c_str(),
                 now.c_str());
    return kExitFailed;
}

}  // namespace

int clusterStatus(const config::Config& c, Millis timeout, bool asJson, const std::map<std::string, LocalDetail>& local) {
    auto view = readCluster(c, timeout);
    std::string summary = "the store is unreachable";
    int code = view ? verdict(*view, c, summary) : kExitStoreUnavailable;
    if (asJson) {
        using json::quote;
        std::string out = "{\"app\":" + quote(c.appName) + ",\"store\":" + quote(view ? "ok" : "unreachable");
        if (!view) {
            out += ",\"error\":" + quote(view.error().message);
        } else {
            out += ",\"leader\":" + quote(view->leader) + ",\"token\":" + std::to_string(view->token);
            const auto& p = view->control.pause;
            out += std::string(",\"cluster_paused\":") + (p.paused ? "true" : "false");
            if (p.paused) out += ",\"paused_by\":" + quote(p.by) + ",\"paused_since_usec\":" + std::to_string(p.sinceUsec);
        }
        out += ",\"replicas\":[";
        for (std::size_t k = 0; k < c.replicas.size(); ++k) {
            const auto& id = c.replicas[k];
            out += std::string(k ? "," : "") + "{\"id\":" + quote(id) + ",\"role\":" + quote(view ? roleOf(*view, id) : "?");
            if (view)
                if (auto it = view->up.find(id); it != view->up.end()) {
                    const auto& m = it->second;
                    out += ",\"host\":" + quote(m.host) + ",\"pid\":" + std::to_string(m.pid) + ",\"token\":" +
                           std::to_string(m.token) + ",\"since_usec\":" + std::to_string(m.sinceUsec) +
                           ",\"mode\":" + quote(m.mode) + ",\"paused\":" + (m.paused ? "true" : "false") +
                           ",\"version\":" + quote(m.version) + ",\"last_error\":" + quote(m.lastError) +
                           ",\"last_error_usec\":" + std::to_string(m.lastErrorUsec);
                }
            if (auto it = local.find(id); it != local.end()) {
                const LocalDetail& l = it->second;
                out += ",\"local\":{\"answered\":" + std::string(l.answered ? "true" : "false");
                if (l.answered)
                    out += ",\"role\":" + quote(l.role) + ",\"store_healthy\":" + (l.storeHealthy ? "true" : "false") +
                           ",\"last_error\":" + quote(l.lastError) + ",\"last_error_usec\":" + std::to_string(l.lastErrorUsec);
                else
                    out += ",\"error\":" + quote(l.error);
                out += "}";
            }
            out += "}";
        }
        out += "],\"summary\":" + quote(summary) + ",\"exit\":" + std::to_string(code) + "}";
        std::printf("%s\n", out.c_str());
        return code;
    }
    if (view) {
        const auto& p = view->control.pause;
        std::string paused = !p.paused ? "" : ", CLUSTER PAUSED" + (p.by.empty() ? "" : " by " + clean(p.by)) +
                                                  (p.sinceUsec ? " since " + since(p.sinceUsec) : "");
        std::printf("app %s, store %s, leader %s, token %lld%s\n", clean(c.appName).c_str(), clean(view->store).c_str(),
                    view->leader.empty() ? "none" : clean(view->leader).c_str(), static_cast<long long>(view->token),
                    paused.c_str());
    } else {
        std::printf("app %s, store unreachable: %s\n", clean(c.appName).c_str(), clean(view.error().message).c_str());
    }
    std::printf("%-10s %-10s %-16s %-8s %-8s %-19s %-6s %-6s %-8s %-10s %s\n", "REPLICA", "ROLE", "HOST", "PID", "TOKEN",
                "SINCE", "MODE", "PAUSED", "VERSION", "LOCAL", "LAST-ERROR");
    for (const auto& id : c.replicas) {
        store::MemberInfo m;
        if (view)
            if (auto it = view->up.find(id); it != view->up.end()) m = it->second;
        std::string localRole = "-", lastError = withAge(clean(m.lastError), m.lastErrorUsec);
        if (auto it = local.find(id); it != local.end()) {
            localRole = it->second.answered ? it->second.role : "NO-REPLY";
            // This node's daemon knows better (and sees the store's health from here).
            lastError = it->second.answered ? withAge(clean(it->second.lastError), it->second.lastErrorUsec)
                                            : clean(it->second.error);
        }
        const bool up = view && view->up.count(id);
        auto dash = [&](const std::string& s) { return up && !s.empty() ? clean(s) : std::string("-"); };
        std::printf("%-10s %-10s %-16s %-8s %-8s %-19s %-6s %-6s %-8s %-10s %s\n", clean(id).c_str(),
                    clean(view ? roleOf(*view, id) : "?").c_str(), dash(m.host).c_str(),
                    up && m.pid ? std::to_string(m.pid).c_str() : "-", up ? std::to_string(m.token).c_str() : "-",
                    up ? since(m.sinceUsec).c_str() : "-", dash(m.mode).c_str(), up && view->hasControl ? (m.paused ? "yes" : "no") : "-",
                    dash(m.version).c_str(), clean(localRole).c_str(), fitLastColumn(lastError, 111).c_str());
    }
    std::fprintf(code ? stderr : stdout, "%s\n", summary.c_str());
    return code;
}

int clusterSwitchover(const config::Config& c, const std::string& target, Millis timeout) {
    if (!target.empty() && !known(c, target)) {
        std::fprintf(stderr, "promctl: %s is not a replica of %s\n", clean(target).c_str(), clean(c.appName).c_str());
        return kExitInvalid;
    }
    EtcdSession s(c, timeout);
    auto v = readOrSay(s, c);
    if (!v) return kExitStoreUnavailable;
    if (v->control.pause.paused) {
        std::fprintf(stderr, "promctl: %s: no switchover (promctl -c CONFIG resume --cluster ends it)\n",
                     pausedText(v->control.pause).c_str());
        return kExitInvalid;
    }
    const std::string from = v->leader;
    if (from.empty() || roleOf(*v, from) != "active") {
        std::fprintf(stderr, "promctl: no replica is active%s: nothing to switch over\n",
                     from.empty() ? "" : (" (the leader " + clean(from) + " is " + clean(roleOf(*v, from)) + ")").c_str());
        return kExitNoActive;
    }
    if (!target.empty()) {
        std::string why;
        if (target == from)
            why = "is the active already";
        else if (!v->up.count(target))
            why = "is down (no member key in the store)";
        else if (v->up[target].paused)
            why = "is paused (promctl -c CONFIG resume " + clean(target) + " ends it)";
        else if (roleOf(*v, target) != "passive")
            why = "is " + clean(roleOf(*v, target)) + ", not passive";
        if (!why.empty()) {
            std::fprintf(stderr, "promctl: replica %s %s: not switching over to it\n", clean(target).c_str(), why.c_str());
            return kExitInvalid;
        }
    }
    if (target.empty()) {
        bool candidate = false;
        for (const auto& [id, m] : v->up) candidate = candidate || (known(c, id) && roleOf(*v, id) == "passive" && !m.paused);
        if (!candidate) {
            std::fprintf(stderr, "promctl: no live, unpaused passive replica to take over: not switching over\n");
            return kExitInvalid;
        }
    }
    Request req(s, std::max(kMinWait, timeout));
    store::ControlRequest r;
    r.op = store::ControlOp::Switchover;
    r.target = target;
    r.token = v->token;
    if (auto sent = req.send(r); !sent) {
        std::fprintf(stderr, "promctl: writing the request failed: %s\n", clean(sent.error().message).c_str());
        return writeFailed(sent.error());
    }
    return awaitNewActive(s, c, req, "switchover", from, v->token, target);
}

int clusterResign(const config::Config& c, Millis timeout) {
    EtcdSession s(c, timeout);
    auto v = readOrSay(s, c);
    if (!v) return kExitStoreUnavailable;
    const std::string from = v->leader;
    if (from.empty()) {
        std::fprintf(stderr, "promctl: no replica is active: nothing to resign\n");
        return kExitNoActive;
    }
    if (v->control.pause.paused) {
        std::fprintf(stderr, "promctl: %s: no resign, nobody would take over (promctl -c CONFIG resume --cluster ends it)\n",
                     pausedText(v->control.pause).c_str());
        return kExitInvalid;
    }
    Request req(s, std::max(kMinWait, timeout));
    store::ControlRequest r;
    r.op = store::ControlOp::Resign;
    r.token = v->token;
    if (auto sent = req.send(r); !sent) {
        std::fprintf(stderr, "promctl: writing the request failed: %s\n", clean(sent.error().message).c_str());
        return writeFailed(sent.error());
    }
    return awaitNewActive(s, c, req, "resign", from, v->token, "");
}

int clusterPause(const config::Config& c, bool pause, bool cluster, const std::string& replica, Millis timeout) {
    const char* what = pause ? "pause" : "resume";
    if (!cluster && !known(c, replica)) {
        std::fprintf(stderr, "promctl: %s is not a replica of %s\n", clean(replica).c_str(), clean(c.appName).c_str());
        return kExitInvalid;
    }
    EtcdSession s(c, timeout);
    auto v = readOrSay(s, c);
    if (!v) return kExitStoreUnavailable;
    const Millis wait = std::max(timeout, Millis(5000));
    if (cluster) {
        store::ClusterPause p{pause, whoAmI(), realtimeUsec()};
        if (auto put = s.wait<Ok>([&](auto done) { s.etcd().putPause(p, std::move(done)); }); !put) {
            std::fprintf(stderr, "promctl: writing the cluster pause failed: %s\n", clean(put.error().message).c_str());
            return writeFailed(put.error());
        }
        // Written: it holds for every replica from its next read or watch event. Report who shows it.
        const TimePoint start = sd::EventLoop::now();
        std::set<std::string> waiting;
        while (true) {
            auto now = readCluster(s, c);
            waiting.clear();
            if (now)
                for (const auto& [id, m] : now->up)
                    if (pause && !m.paused) waiting.insert(id);
            if ((now && waiting.empty()) || sd::EventLoop::now() - start >= wait) break;
            s.pause(kFirstPoll * 5);
        }
        std::printf("cluster %s (control/pause in the store)%s\n", pause ? "paused: no takeover, no demotion on failed checks"
                                                                          : "resumed",
                    waiting.empty() ? "" : ", not yet shown by:");
        for (const auto& id : waiting) std::printf("  replica %s\n", clean(id).c_str());
        return 0;
    }
    if (!v->up.count(replica)) {
        std::fprintf(stderr, "promctl: replica %s is down (no member key in the store)\n", clean(replica).c_str());
        return kExitInvalid;
    }
    Request req(s, wait);
    store::ControlRequest r;
    r.op = pause ? store::ControlOp::Pause : store::ControlOp::Resume;
    r.target = replica;
    if (auto sent = req.send(r); !sent) {
        std::fprintf(stderr, "promctl: writing the request failed: %s\n", clean(sent.error().message).c_str());
        return writeFailed(sent.error());
    }
    for (Millis poll = kFirstPoll; !req.expired(); poll = std::min(poll * 2, kPoll)) {
        s.pause(poll);
        req.keepAlive();
        auto now = readCluster(s, c);
        if (!now) continue;
        if (int code = refused(*now, req, what)) return code;
        // Done when the replica answered and its member key shows it (a resumed replica stays
        // paused while the cluster is).
        auto m = now->up.find(replica);
        const bool shown = m != now->up.end() && m->second.paused == (pause || now->control.pause.paused);
        if (now->control.replies.count(req.id()) && shown) {
            std::printf("%s: done (replica %s%s)\n", what, clean(replica).c_str(),
                        !pause && now->control.pause.paused ? ", still paused by the cluster pause" : "");
            return 0;
        }
    }
    if (g_interrupted) return interrupted(what);
    std::fprintf(stderr, "promctl: %s: replica %s did not answer within %.0f ms\n", what, clean(replica).c_str(),
                 elapsedMs(req.sent()));
    return kExitFailed;
}

}  // namespace prom::ctl

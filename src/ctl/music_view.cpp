// promctl -c CONFIG status on MUSIC: the cluster as PROM's rows and lock queue show it, read with
// GETs only. promctl never creates a lock reference, acquires, releases or writes a row: on
// MUSIC any of these changes the election (a reference joins the queue, a release hands the
// lock on), so store::Music (which joins the queue to read its head) is not used here.
#include <time.h>

#include <memory>
#include <optional>

#include "common/text.hpp"
#include "ctl/cluster_view.hpp"
#include "daemon/store_settings.hpp"
#include "ctl/session.hpp"
#include "store/http.hpp"
#include "store/music.hpp"

namespace prom::ctl {
namespace {

using Millis = std::chrono::milliseconds;

std::int64_t wallMillis() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/** GETs against the replicas' MUSIC locations with their headers and timeouts, on promctl's
 *  Session. */
class MusicReader {
public:
    MusicReader(const config::Config& c, Millis timeout) : m_session(c), m_s(daemon::musicSettings(c, "promctl")) {
        m_s.requestTimeout = std::min(m_s.requestTimeout, timeout);
        m_headers = store::musicHeaders(m_s);
    }

    /** The reply of the first location that answers, tried in the configured order (PROM's). */
    Result<json::Value> get(const std::string& path) {
        std::string firstError;
        for (const auto& base : m_s.locations) {
            auto reply = getFrom(base, path);
            if (reply) return reply;
            if (firstError.empty()) firstError = text::redactUrl(base) + ": " + reply.error().message;
        }
        return Error{"no MUSIC location answered GET " + path + ": " + firstError};
    }

    std::string locations() const {
        std::string s;
        for (const auto& l : m_s.locations) s += (s.empty() ? "" : ",") + text::redactUrl(l);
        return s;
    }

private:
    Result<json::Value> getFrom(const std::string& base, const std::string& path) {
        store::RequestId id = 0;
        // curl ends the request at its timeout; the extra second only keeps a stuck loop bounded.
        auto reply = m_session.await<store::HttpResponse>(
            [&](auto done) { id = m_session.http().request("GET", base + path, "", m_headers, m_s.requestTimeout, done); },
            sd::EventLoop::now() + m_s.requestTimeout + Millis(1000));
        if (!reply) {
            m_session.http().cancel(id);
            return Error{"no answer within " + std::to_string(m_s.requestTimeout.count()) + " ms"};
        }
        return store::musicReplyBody(*reply);
    }

    Session m_session;
    store::MusicSettings m_s;
    std::vector<std::string> m_headers;
};

struct Row {
    std::string id;
    bool isActive = false;
    std::int64_t heartbeat = 0;  ///< timeoflastupdate, wall-clock ms; 0 = none
    std::string lockRef;
};

Result<std::vector<Row>> readRows(MusicReader& music, const std::string& keyspace) {
    auto reply = music.get("/keyspaces/" + keyspace + "/tables/Replicas/rows");
    if (!reply) return reply.error();
    if (!store::musicSuccess(*reply))
        return Error{"MUSIC select of " + keyspace + ".Replicas failed: " + store::musicMessage(*reply)};
    std::vector<Row> rows;
    // MUSIC's select answers {"result": {"row 0": {...}, "row 1": {...}}}.
    if (const json::Value* result = reply->find("result"))
        for (const auto& m : result->members) {
            Row r;
            r.id = store::musicText(m.value.find("id"));
            if (r.id.empty() || r.id == "PROM_ADMIN") continue;  // PROM_ADMIN only names the lock
            r.isActive = store::musicText(m.value.find("isactive")) == "true";
            r.heartbeat = json::parseInt(store::musicText(m.value.find("timeoflastupdate"))).value_or(0);
            r.lockRef = store::musicText(m.value.find("lockref"));
            rows.push_back(std::move(r));
        }
    return rows;
}

Result<std::string> readHolder(MusicReader& music, const std::string& lockName) {
    auto reply = music.get("/locks/enquire/" + lockName);
    if (!reply) return reply.error();
    return store::musicLockHolder(*reply);
}

}  // namespace

Result<ClusterView> readMusicCluster(const config::Config& c, Millis timeout) {
    MusicReader music(c, timeout);
    const std::string keyspace = store::musicKeyspace(c.appName);
    ClusterView view;
    view.store = "MUSIC " + music.locations();
    view.hasControl = false;

    // The rows and the head of the queue are two reads: the rows count as read at one holder
    // when the same reference heads the queue before and after them (a takeover in between
    // shows the old holder's row already cleared, or the new one's not yet marked).
    auto holder = readHolder(music, store::musicLockName(c.appName));
    if (!holder) return holder.error();
    Result<std::vector<Row>> rows = std::vector<Row>{};
    for (int attempt = 0; attempt < 3; ++attempt) {
        rows = readRows(music, keyspace);
        if (!rows) return rows.error();
        auto after = readHolder(music, store::musicLockName(c.appName));
        if (!after) return after.error();
        const bool settled = *after == *holder;
        holder = std::move(after);
        if (settled) break;
    }

    const std::int64_t now = wallMillis();
    const std::int64_t timeoutMs = c.election.timeout.count();
    for (const Row& r : *rows) {
        const bool holds = !holder->empty() && r.lockRef == *holder;
        if (holds && view.leader.empty()) {
            view.leader = r.id;
            view.token = store::musicToken(*holder);
        }
        // PROM's liveness test (isReplicaAlive): a heartbeat older than the timeout by this
        // node's wall clock, or none, is a dead replica.
        if (r.heartbeat <= 0 || now - r.heartbeat > timeoutMs) continue;
        store::MemberInfo m;
        m.id = r.id;
        // What the row claims (isactive), checked against the lock: a row that claims active
        // without holding the lock is a replica that has not yet seen its lock released, and
        // is shown active so that two actives show; the head of the queue that has not yet
        // acquired the lock (its row not yet marked) is on its way to active.
        if (holds) {
            m.role = r.isActive ? "active" : "promoting";
            m.token = view.token;
        } else {
            m.role = r.isActive ? "active" : "passive";
        }
        view.up[r.id] = std::move(m);
    }
    return view;
}

}  // namespace prom::ctl

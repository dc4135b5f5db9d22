#include "store/music.hpp"

#include <cctype>
#include <ctime>

#include "common/base64.hpp"
#include "common/log.hpp"

namespace prom::store {
namespace {

std::int64_t wallMillis() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

// MUSIC's "this reference is not (or no longer) in the queue" across versions: 3.0 (ZooKeeper)
// "Lockid doesn't exist"; 3.2.18 "<n> is no longer/or was never in the lock store queue".
bool staleRefMessage(const std::string& m) {
    return m.find("doesn't exist") != std::string::npos || m.find("never in the lock store queue") != std::string::npos;
}

// MUSIC answers "no holder" as "" (empty queue), "No lock holder!" (no lock node, 3.0) or
// a FAILURE (3.2.40).
bool noHolder(const std::string& ref) { return ref.empty() || ref == "No lock holder!"; }

std::string str(const json::Value* v) { return musicText(v); }

}  // namespace

std::string musicText(const json::Value* v) {
    if (!v) return "";
    if (v->type == json::Type::String || v->type == json::Type::Number) return v->text;
    if (v->type == json::Type::Bool) return v->boolean ? "true" : "false";
    return "";
}

std::string musicKeyspace(const std::string& app) { return "prom_" + app; }

std::string musicLockName(const std::string& app) { return musicKeyspace(app) + ".Replicas.PROM_ADMIN"; }

std::vector<std::string> musicHeaders(const MusicSettings& s) {
    std::vector<std::string> headers{"Accept: application/json"};
    if (!s.aid.empty()) headers.push_back("aid: " + s.aid);
    if (!s.ns.empty()) headers.push_back("ns: " + s.ns);
    if (!s.user.empty() && !s.password.empty()) {
        if (s.basicAuth) {
            headers.push_back("Authorization: Basic " + base64::encode(s.user + ":" + s.password));
        } else {
            headers.push_back("userId: " + s.user);
            headers.push_back("password: " + s.password);
        }
    }
    return headers;
}

Result<json::Value> musicReplyBody(const HttpResponse& resp) {
    if (resp.curl != CURLE_OK || resp.status >= 500 || resp.status == 0) return Error{resp.describe()};
    auto parsed = json::parse(resp.body);
    if (auto* e = std::get_if<json::SyntaxError>(&parsed))
        return Error{"HTTP " + std::to_string(resp.status) + " with a body that is not JSON (" + e->message +
                     "): " + resp.body.substr(0, 120)};
    if (std::get<json::Value>(parsed).type != json::Type::Object)
        return Error{"HTTP " + std::to_string(resp.status) + " with a JSON body that is not an object"};
    return std::get<json::Value>(std::move(parsed));
}

std::string musicLockHolder(const json::Value& reply) {
    const json::Value* lock = reply.find("lock");
    if (!musicSuccess(reply) && !lock) return "";  // 3.2.40: empty queue
    std::string holder = lock ? str(lock->find("lock-holder")) : "";
    return noHolder(holder) ? "" : holder;
}

std::string musicBaseUrl(const std::string& location, std::int64_t version) {
    if (location.starts_with("http://") || location.starts_with("https://")) {
        std::string s = location;
        while (!s.empty() && s.back() == '/') s.pop_back();
        return s;
    }
    return "http://" + location + ":8080/MUSIC/rest/v" + std::to_string(version);
}

std::int64_t musicToken(const std::string& ref) {
    std::size_t end = ref.size(), start = end;
    while (start > 0 && std::isdigit(static_cast<unsigned char>(ref[start - 1]))) --start;
    if (start == end) return 0;
    return json::parseInt(ref.substr(start, std::min<std::size_t>(end - start, 18))).value_or(0);
}

bool musicSuccess(const json::Value& reply) {
    const json::Value* s = reply.find("status");
    return s && s->text == "SUCCESS";
}

std::string musicMessage(const json::Value& reply) {
    for (const char* k : {"message", "error", "Exception"})
        if (const json::Value* v = reply.find(k); v && !v->text.empty()) return v->text;
    return "";
}

bool Music::Reply::success() const { return musicSuccess(body); }

std::string Music::Reply::message() const { return musicMessage(body); }

Music::Music(sd::EventLoop& loop, Http& http, MusicSettings settings)
    : m_loop(loop), m_http(http), m_s(std::move(settings)) {
    m_keyspace = musicKeyspace(m_s.app);
    m_lockName = musicLockName(m_s.app);
}

Music::~Music() {
    *m_alive = false;
    cancelWatch();
}

void Music::call(const std::string& method, const std::string& path, const std::string& body, ReplyDone done,
                 std::size_t location, std::string firstError) {
    if (location >= m_s.locations.size())
        return done(Error{"no MUSIC location answered " + method + " " + path + ": " + firstError});
    std::vector<std::string> headers = musicHeaders(m_s);
    std::string url = m_s.locations[location] + path;
    std::weak_ptr<bool> alive = m_alive;
    m_http.request(method, url, body, headers, m_s.requestTimeout,
                   [=, this](HttpResponse resp) {
                       if (alive.expired()) return;
                       Reply r;
                       r.status = resp.status;
                       auto reply = musicReplyBody(resp);
                       if (!reply) {
                           const std::string& why = reply.error().message;
                           // The next location, as PROM does for any failure of this one.
                           log::warning("MUSIC " + url + ": " + why);
                           call(method, path, body, done, location + 1, firstError.empty() ? why : firstError);
                           return;
                       }
                       r.body = std::move(*reply);
                       done(std::move(r));
                   });
}

void Music::bootstrap(std::function<void(Result<Ok>)> done) {
    if (m_bootstrapped) return done(Ok{});
    // As PROM's constructor: keyspace, table, index, PROM_ADMIN row, own row. "Already exists"
    // answers are fine for any app name (PROM hard-coded prom_sdnc there).
    std::string ks = "/keyspaces/" + m_keyspace;
    std::string tb = ks + "/tables/Replicas";
    auto step5 = [this, tb, done](Result<Reply>) {
        // Own row. PROM writes {isactive: false, timeoflastupdate: 0} here, which makes a
        // restarted holder look dead to every PROM peer until its first heartbeat: they release
        // its lock (issue 15). An existing row only gets a fresh timeoflastupdate (isactive and
        // lockref stay, so a previous lockref survives, as in PROM); a new row is written as a
        // passive that is alive now.
        readRow("id=" + m_s.self, [this, tb, done](Result<std::optional<json::Value>> row) {
            bool exists = !row || row.value();  // unknown: assume it exists, touch only the time
            std::string body = "{\"values\":{\"id\":" + json::quote(m_s.self) + (exists ? "" : ",\"isactive\":false") +
                               ",\"timeoflastupdate\":" + std::to_string(wallMillis()) +
                               "},\"consistencyInfo\":{\"type\":\"eventual\"}}";
            call("POST", tb + "/rows", body, [this, done](Result<Reply> r) {
                if (!r) return done(r.error());
                m_bootstrapped = true;
                done(Ok{});
            });
        });
    };
    auto step4 = [this, tb, step5](Result<Reply>) {
        call("POST", tb + "/rows",
             "{\"values\":{\"id\":\"PROM_ADMIN\",\"isactive\":false,\"timeoflastupdate\":0},\"consistencyInfo\":{\"type\":\"eventual\"}}",
             step5);
    };
    auto step3 = [this, tb, step4](Result<Reply>) { call("POST", tb + "/index/lockref", "", step4); };
    auto step2 = [this, tb, step3](Result<Reply>) {
        call("POST", tb,
             "{\"fields\":{\"id\":\"text\",\"isactive\":\"boolean\",\"timeoflastupdate\":\"varint\",\"lockref\":\"text\","
             "\"PRIMARY KEY\":\"(id)\"},\"consistencyInfo\":{\"type\":\"eventual\"}}",
             step3);
    };
    call("POST", ks,
         "{\"replicationInfo\":{\"class\":\"SimpleStrategy\",\"replication_factor\":3},\"durabilityOfWrites\":\"true\","
         "\"consistencyInfo\":{\"type\":\"eventual\"}}",
         [step2, done](Result<Reply> r) {
             if (!r) return done(r.error());  // no location at all: nothing else will work
             step2(std::move(r));
         });
}

void Music::readRow(const std::string& query, std::function<void(Result<std::optional<json::Value>>)> done) {
    call("GET", "/keyspaces/" + m_keyspace + "/tables/Replicas/rows?" + query, "", [done](Result<Reply> r) {
        if (!r) return done(r.error());
        if (!r->success()) return done(Error{"MUSIC select failed: " + r->message()});
        const json::Value* result = r->body.find("result");
        if (!result || result->members.empty()) return done(std::optional<json::Value>{});
        done(std::optional<json::Value>(result->members.front().value));
    });
}

void Music::ensureRef(std::function<void(Result<Ok>)> done) {
    if (!m_ref.empty()) return done(Ok{});
    // Concurrent callers wait for the one reference being created: never two in the queue.
    m_refWaiters.push_back(std::move(done));
    if (m_refWaiters.size() > 1) return;
    auto finish = [this](Result<Ok> r) {
        auto waiters = std::move(m_refWaiters);
        m_refWaiters.clear();
        for (auto& w : waiters) w(r);
    };
    bootstrap([this, finish](Result<Ok> b) {
        if (!b) return finish(b.error());
        // At the first start, reuse the reference our row still names (PROM does): a restarted
        // active keeps its place at the head of the queue and resumes without a failover.
        readRow("id=" + m_s.self, [this, finish](Result<std::optional<json::Value>> row) {
            std::string previous = m_firstRef && row && row.value() ? str(row.value()->find("lockref")) : "";
            m_firstRef = false;
            auto created = [this, finish](const std::string& ref) {
                m_ref = ref;
                writeRow(false, [finish](Result<Ok>) { finish(Ok{}); });
            };
            if (!previous.empty()) {
                // The row already names it and bootstrap refreshed its time: writing
                // isactive false here would misstate a holder that resumes.
                m_ref = previous;
                return finish(Ok{});
            }
            call("POST", "/locks/create/" + m_lockName, "", [created, finish](Result<Reply> r) {
                if (!r) return finish(r.error());
                const json::Value* lock = r->body.find("lock");
                std::string ref = lock ? str(lock->find("lock")) : "";
                if (!r->success() || ref.empty()) return finish(Error{"MUSIC lock create failed: " + r->message()});
                created(ref);
            });
        });
    });
}

void Music::writeRow(bool active, std::function<void(Result<Ok>)> done) {
    std::string body = "{\"values\":{\"id\":" + json::quote(m_s.self) + ",\"isactive\":" + (active ? "true" : "false") +
                       ",\"timeoflastupdate\":" + std::to_string(wallMillis()) + ",\"lockref\":" + json::quote(m_ref) +
                       "},\"consistencyInfo\":{\"type\":\"eventual\"}}";
    call("POST", "/keyspaces/" + m_keyspace + "/tables/Replicas/rows", body, [done](Result<Reply> r) {
        if (!r) return done(r.error());
        if (!r->success()) return done(Error{"MUSIC heartbeat write failed: " + r->message()});
        done(Ok{});
    });
}

void Music::acquire(std::function<void(Result<bool>)> done) {
    // The answer is about this reference: a concurrent call may have replaced m_ref meanwhile.
    std::string ref = m_ref;
    call("GET", "/locks/acquire/" + ref, "", [this, ref, done](Result<Reply> r) {
        if (!r) return done(r.error());
        if (ref != m_ref) return done(false);
        if (r->success()) return done(true);
        if (!r->body.find("status")) return done(Error{"MUSIC acquire answered without a status: " + r->message()});
        if (staleRefMessage(r->message())) {
            log::warning("MUSIC: our lock reference " + ref + " is gone (" + r->message() + ")");
            m_ref.clear();
            m_holding = false;
        }
        done(false);
    });
}

void Music::release(const std::string& ref, const std::string& holderId, std::function<void(Result<Ok>)> done) {
    call("DELETE", "/locks/release/" + ref, "", [this, holderId, done](Result<Reply> r) {
        if (!r) return done(r.error());
        if (holderId.empty()) return done(Ok{});
        std::string body = "{\"values\":{\"isactive\":false,\"lockref\":\"\"},\"consistencyInfo\":{\"type\":\"eventual\"}}";
        call("PUT", "/keyspaces/" + m_keyspace + "/tables/Replicas/rows?id=" + holderId, body,
             [done](Result<Reply> u) {
                 if (!u) return done(u.error());
                 done(Ok{});
             });
    });
}

bool Music::deadAfterObserving(const std::string& id, std::int64_t heartbeat) {
    auto now = sd::EventLoop::now();
    auto it = m_seen.find(id);
    if (it == m_seen.end() || it->second.value != heartbeat) {
        m_seen[id] = Seen{heartbeat, now};
        return false;
    }
    return now - it->second.changedAt >= m_s.peerTimeout;
}

core::LeaderKey Music::selfKey() const { return core::LeaderKey{true, m_s.self, kSession, musicToken(m_ref), {}}; }

void Music::grantLease(core::Duration, std::function<void(Result<Lease>)> done) {
    // A grant is a heartbeat that reached MUSIC: the active's deadline counts from it. MUSIC has
    // no TTL; peers judge by the heartbeat and the timeout.
    ensureRef([this, done](Result<Ok> r) {
        if (!r) return done(r.error());
        writeRow(m_holding, [this, done](Result<Ok> w) {
            if (!w) return done(w.error());
            done(Lease{kSession, m_s.peerTimeout});
        });
    });
}

void Music::keepAlive(std::int64_t lease, std::function<void(Result<std::optional<core::Duration>>)> done) {
    if (lease != kSession) return done(std::optional<core::Duration>{});
    ensureRef([this, done](Result<Ok> r) {
        if (!r) return done(r.error());
        // The holder proves it still holds the lock on every heartbeat (PROM's activeFlow); a
        // passive learns this way that peers released its reference (it re-joins the queue),
        // which PROM 1.0.6 missed with MUSIC 3.2's messages. The acquire comes before the row
        // is written: the row must not name a reference peers released, with isactive true,
        // since a PROM peer taking over waits on that row (issue 15).
        bool wasHolding = m_holding;
        acquire([this, done, wasHolding](Result<bool> a) {
            if (!a) return done(a.error());
            bool lost = wasHolding && !a.value();
            if (lost) m_holding = false;
            writeRow(m_holding, [this, done, lost](Result<Ok> w) {
                if (lost) return done(std::optional<core::Duration>{});  // the lock is lost: so is the lease
                if (!w) return done(w.error());
                done(std::optional<core::Duration>(m_s.peerTimeout));
            });
        });
    });
}

void Music::revokeLease(std::int64_t, std::function<void(Result<Ok>)> done) {
    // The election gave the lock up (deadline passed): holding it again takes a fresh acquire.
    m_holding = false;
    done(Ok{});
}

void Music::readLeader(std::function<void(Result<core::LeaderRead>)> done) {
    // Know our own reference first, so that the head of the queue can be recognised as ours.
    ensureRef([this, done](Result<Ok> own) {
        if (!own) return done(own.error());
        readHead(done);
    });
}

void Music::readHead(std::function<void(Result<core::LeaderRead>)> done) {
    call("GET", "/locks/enquire/" + m_lockName, "", [this, done](Result<Reply> r) {
        if (!r) return done(r.error());
        std::string holder = musicLockHolder(r->body);
        if (holder.empty()) return done(core::LeaderRead{{}, ++m_revision});
        if (holder == m_ref) {
            if (m_holding) return done(core::LeaderRead{selfKey(), ++m_revision});
            // At the head of the queue: acquire (PROM's isActiveLockHolder) and say so in our row.
            return acquire([this, done](Result<bool> a) {
                if (!a) return done(a.error());
                if (!a.value()) return done(core::LeaderRead{{}, ++m_revision});
                m_holding = true;
                writeRow(true, [this, done](Result<Ok>) { done(core::LeaderRead{selfKey(), ++m_revision}); });
            });
        }
        readRow("lockref=" + holder, [this, holder, done](Result<std::optional<json::Value>> row) {
            if (!row) return done(row.error());
            std::string id = row.value() ? str(row.value()->find("id")) : "";
            std::int64_t beat = row.value() ? json::parseInt(str(row.value()->find("timeoflastupdate"))).value_or(0) : 0;
            // A reference without a row is watched like a silent peer before it is released: its
            // owner may have created it a moment ago and not written its row yet.
            if (!deadAfterObserving(id.empty() ? "ref:" + holder : id, beat))
                return done(core::LeaderRead{{true, id.empty() ? "UNKNOWN" : id, 0, musicToken(holder), {}}, ++m_revision});
            log::warning("MUSIC: lock holder " + (id.empty() ? holder : id) + " has not updated its heartbeat for " +
                         std::to_string(m_s.peerTimeout.count()) + " ms: releasing its lock reference " + holder);
            release(holder, id, [this, done](Result<Ok> rel) {
                if (!rel) return done(rel.error());
                done(core::LeaderRead{{}, ++m_revision});
            });
        });
    });
}

void Music::campaign(std::int64_t, bool, std::function<void(Result<core::CampaignResult>)> done) {
    // With MUSIC the queue decides: join it if we are not in it, then look at its head.
    ensureRef([this, done](Result<Ok> r) {
        if (!r) return done(r.error());
        readLeader([this, done](Result<core::LeaderRead> lr) {
            if (!lr) return done(lr.error());
            bool won = lr->key.exists && lr->key.holder == m_s.self && m_holding;
            done(core::CampaignResult{won, lr->key, lr->revision});
        });
    });
}

void Music::deleteLeader(std::int64_t, std::function<void(Result<Ok>)> done) {
    if (m_ref.empty()) return done(Ok{});
    std::string ref = m_ref;
    release(ref, m_s.self, [this, done](Result<Ok> r) {
        if (!r) return done(r.error());
        m_ref.clear();  // the next heartbeat joins the queue again at its tail
        m_holding = false;
        done(Ok{});
    });
}

void Music::markHandover(std::int64_t, std::int64_t, const std::string&, std::function<void(Result<Ok>)> done) {
    done(Error{"MUSIC's lock queue cannot name a successor: the next replica in the queue takes over"});
}

void Music::readMembers(std::function<void(Result<std::vector<MemberInfo>>)> done) {
    call("GET", "/keyspaces/" + m_keyspace + "/tables/Replicas/rows", "", [this, done](Result<Reply> r) {
        if (!r) return done(r.error());
        std::vector<MemberInfo> alive;
        if (const json::Value* result = r->body.find("result"))
            for (const auto& m : result->members) {
                std::string id = str(m.value.find("id"));
                if (id.empty() || id == "PROM_ADMIN") continue;
                std::int64_t beat = json::parseInt(str(m.value.find("timeoflastupdate"))).value_or(0);
                if (deadAfterObserving(id, beat)) continue;
                MemberInfo member;
                member.id = id;
                alive.push_back(std::move(member));
            }
        done(alive);
    });
}

void Music::watchLeader(std::int64_t, std::function<void(const core::WatchEvent&)> onEvent,
                        std::function<void(const std::string&)> onBroken) {
    m_onEvent = std::move(onEvent);
    m_onBroken = std::move(onBroken);
    m_pollTimer = m_loop.addTimer(sd::EventLoop::now() + m_s.pollInterval, [this] { poll(); });
}

void Music::poll() {
    if (!m_onEvent || m_polling) return;
    m_polling = true;
    std::weak_ptr<bool> alive = m_alive;
    readLeader([this, alive](Result<core::LeaderRead> r) {
        if (alive.expired()) return;
        m_polling = false;
        if (!m_onEvent) return;
        if (!r) {
            auto broken = std::move(m_onBroken);
            cancelWatch();
            if (broken) broken(r.error().message);
            return;
        }
        const auto& k = r->key;
        if (!m_reportedOnce || !(k == m_reported)) {
            m_reported = k;
            m_reportedOnce = true;
            m_onEvent(core::WatchEvent{k, r->revision});
        }
        if (m_onEvent) m_pollTimer = m_loop.addTimer(sd::EventLoop::now() + m_s.pollInterval, [this] { poll(); });
    });
}

void Music::cancelWatch() {
    m_onEvent = nullptr;
    m_onBroken = nullptr;
    m_pollTimer.reset();
}

}  // namespace prom::store

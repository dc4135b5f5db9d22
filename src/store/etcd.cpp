#include "store/etcd.hpp"

#include <algorithm>

#include "common/base64.hpp"
#include "common/log.hpp"
#include "common/text.hpp"

namespace prom::store {
namespace {

using json::quote;

/** Longest replica id (holder, handover target, member) taken from the store. */
constexpr std::size_t kMaxIdBytes = 256;
/** A watch that breaks sooner than this after it opened counts toward the reopen backoff. */
constexpr core::Duration kQuickBreak{1000};
/** Most member keys taken from one reply. */
constexpr std::size_t kMaxMembers = 1000;
/** Longest watch line: an event of the leader key is a few hundred bytes. */
constexpr std::size_t kMaxWatchLine = 256u << 10;
/** Most control keys (requests and replies) kept: promctl writes one of each per command. */
constexpr std::size_t kMaxControlKeys = 256;

std::string str(std::int64_t v) {
    return "\"" + std::to_string(v) + "\"";
}

Result<json::Value> parseReply(std::string_view body, const std::string& what) {
    auto parsed = json::parse(body, json::kStoreLimits);
    if (auto* e = std::get_if<json::SyntaxError>(&parsed))
        return Error{"unparseable etcd reply to " + what + " at byte " + std::to_string(e->offset) + ": " +
                     text::sanitize(e->message, 120) + (body.empty() ? "" : " (" + text::excerpt(body, 60) + ")")};
    auto& v = std::get<json::Value>(parsed);
    if (v.type != json::Type::Object) return Error{"etcd reply to " + what + " is not a JSON object"};
    return std::move(v);
}

std::int64_t intField(const json::Value* v, const char* key) {
    if (!v) return 0;
    const json::Value* f = v->find(key);
    if (!f) return 0;  // etcd omits zero values
    return f->asInt().value_or(0);
}

// etcd's error shapes: unary {"error":"...","message":"...","code":N}; stream
// {"error":{"grpc_code":N,"message":"..."}}. Sanitized: it ends up in LastError and the journal.
std::string errorMessage(const json::Value& root) {
    const json::Value* e = root.find("error");
    if (!e) return "";
    if (e->type == json::Type::String) {
        if (const json::Value* m = root.find("message"); m && m->type == json::Type::String)
            return text::sanitize(m->text, 160);
        return e->text.empty() ? "error" : text::sanitize(e->text, 160);
    }
    if (const json::Value* m = e->find("message"); m && m->type == json::Type::String && !m->text.empty())
        return text::sanitize(m->text, 160);
    return "error";
}

// An answer the endpoint stands behind, about the request itself (bad argument, auth,
// not found, precondition): another endpoint would say the same.
bool definitive(long status) {
    return status >= 400 && status < 500 && status != 408 && status != 429;
}

}  // namespace

std::string encodeLeaderValue(const std::string& holder, const std::string& handoverTo, bool fast) {
    return holder + (handoverTo.empty() ? "" : ">" + handoverTo) + (fast ? "\nmode=fast" : "");
}

core::LeaderKey parseLeaderKv(const json::Value& kv) {
    core::LeaderKey k;
    k.exists = true;
    std::string raw;
    if (const json::Value* v = kv.find("value"); v && v->type == json::Type::String)
        raw = base64::decode(v->text).value_or("");
    // Fast mode marks its keys "ID\nmode=fast" (replica ids never contain a newline).
    if (auto nl = raw.find('\n'); nl != std::string::npos) {
        k.fast = raw.substr(nl + 1) == "mode=fast";
        raw.resize(nl);
    }
    // Replica ids never contain '>' (config validation), so it can separate the successor.
    if (auto gt = raw.find('>'); gt != std::string::npos) {
        k.handoverTo = text::sanitize(std::string_view(raw).substr(gt + 1), kMaxIdBytes);
        raw.resize(gt);
    }
    k.holder = text::sanitize(raw, kMaxIdBytes);
    k.lease = intField(&kv, "lease");
    k.createRevision = intField(&kv, "create_revision");
    return k;
}

struct Etcd::Call {
    std::string path;
    std::string body;
    Reply done;
    Auth auth = Auth::Token;
    std::vector<std::size_t> plan;
    std::size_t step = 0;
    bool reauthed = false;
    std::string failures;
    /** The highest revision seen when the attempt was sent: a linearizable answer is never
     *  older (one seen since, by a watch event or a concurrent reply, may well be newer). */
    std::int64_t floor = 0;
};

Etcd::Etcd(sd::EventLoop& loop, Http& http, EtcdSettings settings)
    : m_loop(loop),
      m_http(http),
      m_s(std::move(settings)),
      m_endpoints(
          std::max<std::size_t>(1, m_s.endpoints.size()),
          // Backoff between failed rounds: capped at half a request timeout, itself at
          // most TTL/3 (daemon), so a store that returns is used well within TTL/3.
          Endpoints::Options{core::Duration(50), std::clamp<core::Duration>(m_s.requestTimeout / 2, core::Duration(50),
                                                                            core::Duration(1000))},
          m_s.seed ? m_s.seed : static_cast<std::uint64_t>(sd::EventLoop::now().time_since_epoch().count())) {
    if (m_s.endpoints.empty()) throw std::invalid_argument("etcd: no endpoint");
    for (auto& ep : m_s.endpoints)
        while (!ep.empty() && ep.back() == '/') ep.pop_back();
    m_leaderKey = m_s.prefix + "/" + m_s.app + "/leader";
    m_membersPrefix = m_s.prefix + "/" + m_s.app + "/members/";
    m_appPrefix = m_s.prefix + "/" + m_s.app + "/";
    m_controlPrefix = m_appPrefix + std::string(kControlDir);
    m_askedTtl = m_s.leaseTtl;
}

Etcd::~Etcd() {
    *m_alive = false;
    cancelWatch();
}

std::vector<std::string> Etcd::headers(Auth auth) const {
    // hasleader: a member without a leader fails fast (503) instead of hanging 7 s, and
    // cancels watches ~4 s after losing its leader instead of going silent forever.
    std::vector<std::string> h{"Grpc-Metadata-hasleader: true"};
    if (auth == Auth::Token && !m_token.empty()) h.push_back("Authorization: " + m_token);  // raw token, no "Bearer"
    return h;
}

void Etcd::later(core::TimePoint at, std::function<void()> fn) {
    std::uint64_t id = ++m_nextTimer;
    m_timers[id] = m_loop.addTimer(at, [this, id, fn = std::move(fn)] {
        auto it = m_timers.find(id);
        if (it == m_timers.end()) return;
        sd::Source keep = std::move(it->second);  // this callback belongs to it
        m_timers.erase(it);
        fn();
    });
}

void Etcd::authenticate(std::function<void(Result<Ok>)> done) {
    m_authWaiters.push_back(std::move(done));
    if (m_authenticating) return;  // every request waits for the one fetch in flight
    m_authenticating = true;
    m_token.clear();
    std::string body = "{\"name\":" + quote(m_s.user) + ",\"password\":" + quote(m_s.password) + "}";
    std::weak_ptr<bool> alive = m_alive;
    call(
        "auth/authenticate", body,
        [this, alive](Result<json::Value> r) {
            if (alive.expired()) return;
            Result<Ok> out = Ok{};
            if (!r) {
                out = Error{"etcd authentication as " + text::sanitize(m_s.user, 64) + " failed: " + r.error().message};
            } else {
                const json::Value* t = r->find("token");
                // The token goes into a header line: anything but visible ASCII would let a
                // reply inject headers.
                bool clean = t && t->type == json::Type::String && !t->text.empty() && t->text.size() <= 4096 &&
                             std::all_of(t->text.begin(), t->text.end(), [](char c) { return c > 0x20 && c < 0x7F; });
                if (clean)
                    m_token = t->text;
                else
                    out = Error{"etcd authentication returned no usable token"};
            }
            m_authenticating = false;
            auto waiters = std::move(m_authWaiters);
            m_authWaiters.clear();
            for (auto& w : waiters) w(out);
        },
        Auth::None);
}

void Etcd::call(const std::string& path, const std::string& body, Reply done, Auth auth) {
    auto c = std::make_shared<Call>();
    c->path = path;
    c->body = body;
    c->done = std::move(done);
    c->auth = auth;
    start(c);
}

void Etcd::start(const std::shared_ptr<Call>& c) {
    if (c->auth == Auth::Token && !m_s.user.empty() && (m_token.empty() || m_authenticating)) {
        std::weak_ptr<bool> alive = m_alive;
        authenticate([this, alive, c](Result<Ok> r) {
            if (alive.expired()) return;
            if (!r) return c->done(r.error());
            start(c);
        });
        return;
    }
    const core::TimePoint now = sd::EventLoop::now();
    if (now < m_endpoints.nextRoundAt()) {
        // Every endpoint failed a moment ago: wait out the backoff instead of hammering them.
        std::weak_ptr<bool> alive = m_alive;
        later(m_endpoints.nextRoundAt(), [this, alive, c] {
            if (!alive.expired()) start(c);
        });
        return;
    }
    c->plan = m_endpoints.plan();
    c->step = 0;
    c->failures.clear();
    attempt(c);
}

void Etcd::attempt(const std::shared_ptr<Call>& c) {
    const std::size_t index = c->plan[c->step];
    c->floor = m_maxRevision;
    std::weak_ptr<bool> alive = m_alive;
    m_http.post(m_s.endpoints[index] + "/v3/" + c->path, c->body, headers(c->auth), m_s.requestTimeout,
                [this, alive, c, index](HttpResponse resp) {
                    if (alive.expired()) return;
                    onReply(c, index, std::move(resp));
                });
}

void Etcd::endpointFailed(std::size_t index, const std::string& why) {
    m_endpoints.failed(index, sd::EventLoop::now());
    // The watch lives where requests succeed: a member that fails a request may be cut off,
    // and a watch on it would wait for TCP to give up (minutes) to say so.
    if (m_watching && m_watchEndpoint == index)
        breakWatch("etcd member " + text::redactUrl(m_s.endpoints[index]) + " failed a request (" + why + ")");
}

void Etcd::onReply(const std::shared_ptr<Call>& c, std::size_t index, HttpResponse resp) {
    const core::TimePoint now = sd::EventLoop::now();
    const std::string where = text::redactUrl(m_s.endpoints[index]);
    std::string failure;
    std::optional<json::Value> body;
    // Everything but a 2xx or a definitive 4xx is the endpoint's failure: transport errors,
    // timeouts, 5xx (no leader, timed out), 3xx (never followed), 408/429.
    if (resp.curl != CURLE_OK || resp.tooLarge || !(resp.status / 100 == 2 || definitive(resp.status))) {
        failure = resp.describe();
    } else {
        auto parsed = parseReply(resp.body, c->path);
        if (parsed)
            body = std::move(parsed.value());
        else if (resp.status / 100 == 2)
            failure = parsed.error().message;  // "OK" with garbage: that endpoint is not etcd as we know it
    }
    // This endpoint failed the call: the next one in the plan, or the error once all did.
    auto moveOn = [&](const std::string& why) {
        log::debug("etcd " + where + "/v3/" + c->path + ": " + why);
        if (!c->failures.empty()) c->failures += "; ";
        c->failures += where + ": " + why;
        endpointFailed(index, why);
        if (++c->step < c->plan.size()) return attempt(c);
        m_endpoints.roundFailed(now);
        c->done(Error{"etcd " + c->path + " failed on every endpoint: " + c->failures});
    };
    if (!failure.empty()) return moveOn(failure);
    if (resp.status / 100 == 2) {
        // Revisions never go backwards in one cluster (every call here is linearizable): a
        // reply older than what was seen before the request left comes from a stale or
        // foreign store.
        std::int64_t revision = intField(body->find("header"), "revision");
        if (revision < 0 || (revision > 0 && revision < c->floor))
            return moveOn("stale reply: revision " + std::to_string(revision) + " after " + std::to_string(c->floor));
        m_maxRevision = std::max(m_maxRevision, revision);
        m_endpoints.succeeded(index, now);
        return c->done(std::move(*body));
    }
    m_endpoints.succeeded(index, now);
    std::string msg = body ? errorMessage(*body) : text::excerpt(resp.body);
    // An expired simple token is 401; a request that went without one is 400 "user name is empty".
    bool tokenProblem = resp.status == 401 || msg.find("user name is empty") != std::string::npos;
    if (tokenProblem && c->auth == Auth::Token && !m_s.user.empty() && !c->reauthed) {
        c->reauthed = true;
        m_token.clear();
        return start(c);
    }
    c->done(
        Error{where + "/v3/" + c->path + ": HTTP " + std::to_string(resp.status) + (msg.empty() ? "" : ": " + msg)});
}

core::Duration Etcd::clampTtl(std::int64_t lease, std::int64_t seconds) const {
    // Never trust a TTL beyond the one asked for: the active's deadline is computed from it,
    // and a lease that lapses in the store before that deadline is a split brain.
    core::Duration bound = kMaxTrustedTtl;
    if (auto it = m_leaseTtls.find(lease); it != m_leaseTtls.end())
        bound = it->second;
    else if (m_askedTtl.count() > 0)
        bound = m_askedTtl;
    const std::int64_t boundSeconds = std::max<std::int64_t>(1, bound.count() / 1000);
    return core::Duration(std::min(seconds, boundSeconds) * 1000);
}

void Etcd::grantLease(core::Duration ttl, std::function<void(Result<Lease>)> done) {
    auto seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
    if (m_s.leaseTtl.count() == 0) m_askedTtl = core::Duration(seconds * 1000);
    std::weak_ptr<bool> alive = m_alive;
    call("lease/grant", "{\"TTL\":" + str(seconds) + "}", [this, alive, seconds, done](Result<json::Value> r) {
        if (alive.expired()) return;
        if (!r) return done(r.error());
        std::int64_t id = intField(&r.value(), "ID");
        std::int64_t granted = intField(&r.value(), "TTL");
        if (id <= 0 || granted <= 0) return done(Error{"etcd lease/grant reply without a valid ID and TTL"});
        m_leaseTtls[id] = core::Duration(seconds * 1000);
        if (m_leaseTtls.size() > 64) m_leaseTtls.erase(m_leaseTtls.begin());
        done(Lease{id, clampTtl(id, granted)});
    });
}

void Etcd::keepAlive(std::int64_t lease, std::function<void(Result<std::optional<core::Duration>>)> done) {
    // One POST = one keepalive; the gateway ends the response when the request body ends.
    std::weak_ptr<bool> alive = m_alive;
    call("lease/keepalive", "{\"ID\":" + str(lease) + "}", [this, alive, lease, done](Result<json::Value> r) {
        if (alive.expired()) return;
        if (!r) return done(r.error());
        if (auto msg = errorMessage(r.value()); !msg.empty()) return done(Error{"etcd lease/keepalive: " + msg});
        const json::Value* result = r->find("result");
        if (!result || result->type != json::Type::Object)
            return done(Error{"etcd lease/keepalive reply without result"});
        if (std::int64_t id = intField(result, "ID"); id != 0 && id != lease)
            return done(Error{"etcd lease/keepalive answered for lease " + std::to_string(id) + ", not " +
                              std::to_string(lease)});
        // A dead lease is HTTP 200 without TTL.
        std::int64_t ttl = intField(result, "TTL");
        if (ttl <= 0) return done(std::optional<core::Duration>{});
        done(std::optional<core::Duration>(clampTtl(lease, ttl)));
    });
}

void Etcd::revokeLease(std::int64_t lease, std::function<void(Result<Ok>)> done) {
    m_leaseTtls.erase(lease);
    call("lease/revoke", "{\"ID\":" + str(lease) + "}", [done](Result<json::Value> r) {
        if (!r && r.error().message.find("HTTP 404") == std::string::npos) return done(r.error());
        done(Ok{});  // 404: already gone
    });
}

void Etcd::readLeader(std::function<void(Result<core::LeaderRead>)> done) {
    readLeaderWith(true, std::move(done));
}

void Etcd::readLeaderWith(bool withRequests, std::function<void(Result<core::LeaderRead>)> done) {
    // The leader key and the control keys (cluster pause, requests) at the same revision, so
    // that the watch from that revision misses no change of either: one txn of several ranges.
    // Only the control keys, and at most kMaxControlKeys requests and replies: other keys of
    // the app and a flood of requests must not make the reply too large to read, or no replica
    // could read the leader key (and none would take over); the pause has its own range, so
    // that no number of other keys hides it. Without requests (their values too large for one
    // reply), only the pause key is counted: its existence is the pause.
    auto prefix = [&](const std::string& dir) {
        std::string end = dir;
        end.back() = static_cast<char>(end.back() + 1);
        return "{\"request_range\":{\"key\":" + quote(base64::encode(dir)) + ",\"range_end\":" +
               quote(base64::encode(end)) + ",\"limit\":" + str(static_cast<std::int64_t>(kMaxControlKeys)) + "}}";
    };
    const std::string pause = quote(base64::encode(m_controlPrefix + "pause"));
    std::string body = "{\"success\":[{\"request_range\":{\"key\":" + quote(base64::encode(m_leaderKey)) + "}}";
    if (withRequests)
        body += ",{\"request_range\":{\"key\":" + pause + "}}," + prefix(m_controlPrefix + "requests/") + "," +
                prefix(m_controlPrefix + "replies/");
    else
        body += ",{\"request_range\":{\"key\":" + pause + ",\"count_only\":true}}";
    body += "]}";
    std::weak_ptr<bool> alive = m_alive;
    call("kv/txn", body, [this, alive, withRequests, done](Result<json::Value> r) {
        if (alive.expired()) return;
        if (!r) {
            if (withRequests && r.error().message.find(kTooLargeText) != std::string::npos) {
                log::warning("the control keys are too large to read in one reply (" + r.error().message +
                             "); reading the leader key and the cluster pause without the requests");
                return readLeaderWith(false, done);
            }
            return done(r.error());
        }
        core::LeaderRead out{{}, intField(r->find("header"), "revision")};
        if (out.revision <= 0) return done(Error{"etcd kv/txn reply without a revision"});
        const json::Value* responses = r->find("responses");
        const std::size_t ranges = withRequests ? 4 : 2;
        if (!responses || responses->type != json::Type::Array || responses->items.size() != ranges)
            return done(Error{"etcd kv/txn reply without its " + std::to_string(ranges) + " ranges"});
        std::vector<const json::Value*> range;
        for (const auto& item : responses->items) {
            const json::Value* rr = item.find("response_range");
            if (!rr) return done(Error{"etcd kv/txn reply with a response that is not a range"});
            range.push_back(rr);
        }
        if (const json::Value* kvs = range[0]->find("kvs"); kvs && kvs->type == json::Type::Array && !kvs->items.empty())
            out.key = parseLeaderKv(kvs->items[0]);
        if (out.key.exists && (out.key.createRevision <= 0 || out.key.createRevision > out.revision))
            return done(Error{"etcd kv/txn reply with an invalid create_revision"});
        m_control = ControlState{};
        if (!withRequests) {
            if (intField(range[1], "count") > 0) m_control.pause.paused = true;
        } else {
            for (std::size_t i = 1; i < ranges; ++i) {
                const json::Value* kvs = range[i]->find("kvs");
                if (!kvs || kvs->type != json::Type::Array) continue;
                for (const auto& kv : kvs->items) {
                    std::string key;
                    if (const json::Value* k = kv.find("key"); k && k->type == json::Type::String)
                        key = base64::decode(k->text).value_or("");
                    std::optional<std::string> value;
                    if (const json::Value* v = kv.find("value"); v && v->type == json::Type::String)
                        value = base64::decode(v->text);
                    applyControl(key, value.value_or(""), intField(&kv, "lease"), intField(&kv, "mod_revision"));
                }
            }
        }
        if (m_onControl) m_onControl(m_control);
        if (alive.expired()) return;
        done(out);
    });
}

bool Etcd::applyControl(const std::string& key, const std::optional<std::string>& value, std::int64_t lease,
                        std::int64_t revision) {
    if (key.size() <= m_appPrefix.size() || key.compare(0, m_appPrefix.size(), m_appPrefix) != 0) return false;
    // Bounded: a flood of request keys must not grow prom without limit.
    if (value && m_control.requests.size() + m_control.replies.size() >= kMaxControlKeys &&
        key != m_controlPrefix + "pause")
        return false;
    return applyControlKey(m_control, std::string_view(key).substr(m_appPrefix.size()), value, lease, revision);
}

void Etcd::putPause(const ClusterPause& pause, std::function<void(Result<Ok>)> done) {
    const std::string k = quote(base64::encode(m_controlPrefix + "pause"));
    auto reply = [done](Result<json::Value> r) {
        if (!r) return done(r.error());
        done(Ok{});
    };
    // On no lease: a maintenance pause outlives every prom (and promctl), until resumed.
    if (pause.paused)
        call("kv/put", "{\"key\":" + k + ",\"value\":" + quote(base64::encode(encodePause(pause))) + "}", reply);
    else
        call("kv/deleterange", "{\"key\":" + k + "}", reply);
}

void Etcd::putRequest(const ControlRequest& request, std::int64_t lease, std::function<void(Result<Ok>)> done) {
    std::string body = "{\"key\":" + quote(base64::encode(m_controlPrefix + "requests/" + request.id)) +
                       ",\"value\":" + quote(base64::encode(encodeRequest(request))) + ",\"lease\":" + str(lease) + "}";
    call("kv/put", body, [done](Result<json::Value> r) {
        if (!r) return done(r.error());
        done(Ok{});
    });
}

void Etcd::answerRequest(const ControlRequest& request, const ControlReply& reply, std::function<void(Result<Ok>)> done) {
    const std::string req = quote(base64::encode(m_controlPrefix + "requests/" + request.id));
    // The reply lives on the requester's lease, like its request: both vanish when promctl
    // revokes it or dies. A request written on no lease gets no reply (it would stay forever).
    std::string success = "[";
    if (request.lease > 0)
        success += "{\"request_put\":{\"key\":" + quote(base64::encode(m_controlPrefix + "replies/" + request.id)) +
                   ",\"value\":" + quote(base64::encode(encodeReply(reply))) + ",\"lease\":" + str(request.lease) + "}},";
    success += "{\"request_delete_range\":{\"key\":" + req + "}}]";
    std::string body = "{\"compare\":[{\"key\":" + req + ",\"target\":\"MOD\",\"result\":\"EQUAL\",\"mod_revision\":" +
                       str(request.revision) + "}],\"success\":" + success + "}";
    call("kv/txn", body, [done](Result<json::Value> r) {
        if (!r) return done(r.error());
        done(Ok{});  // not succeeded = the request changed or went away meanwhile: nothing to answer
    });
}

void Etcd::campaign(std::int64_t lease, bool fast, std::function<void(Result<core::CampaignResult>)> done) {
    const std::string k = quote(base64::encode(m_leaderKey));
    const std::string value = encodeLeaderValue(m_s.self, "", fast);
    m_campaignedFast = fast;
    // Create-if-absent bound to our lease, with the current holder read in the same round trip.
    std::string body = "{\"compare\":[{\"key\":" + k +
                       ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"0\"}]," +
                       "\"success\":[{\"request_put\":{\"key\":" + k + ",\"value\":" + quote(base64::encode(value)) +
                       ",\"lease\":" + str(lease) + "}}]," + "\"failure\":[{\"request_range\":{\"key\":" + k + "}}]}";
    std::weak_ptr<bool> alive = m_alive;
    call("kv/txn", body, [this, alive, lease, fast, done](Result<json::Value> r) {
        if (alive.expired()) return;
        if (!r) {
            // A timed-out or 5xx write may still commit: re-read before deciding.
            log::warning("campaign outcome unknown (" + r.error().message + "); re-reading the leader key");
            readLeader([this, lease, done](Result<core::LeaderRead> rr) {
                if (!rr) return done(Error{"campaign outcome unknown and re-read failed: " + rr.error().message});
                const auto& key = rr->key;
                if (key.exists && key.holder == m_s.self && key.lease == lease)
                    return done(core::CampaignResult{true, key, rr->revision});
                if (key.exists) return done(core::CampaignResult{false, key, rr->revision});
                done(Error{"campaign did not commit; the leader key is absent"});
            });
            return;
        }
        std::int64_t revision = intField(r->find("header"), "revision");
        if (revision <= 0) return done(Error{"etcd kv/txn reply without a revision"});
        const json::Value* ok = r->find("succeeded");
        if (ok && ok->type == json::Type::Bool && ok->boolean) {
            core::LeaderKey key{true, m_s.self, lease, revision, {}, fast};
            return done(core::CampaignResult{true, key, revision});
        }
        core::LeaderKey key;
        if (const json::Value* resp = r->find("responses"); resp && !resp->items.empty())
            if (const json::Value* range = resp->items[0].find("response_range"))
                if (const json::Value* kvs = range->find("kvs"); kvs && !kvs->items.empty())
                    key = parseLeaderKv(kvs->items[0]);
        if (key.exists && (key.createRevision <= 0 || key.createRevision > revision))
            return done(Error{"etcd kv/txn reply with an invalid create_revision"});
        // The same txn retried on another endpoint after the first one committed finds our
        // own key: that is a win, with the key's own revision as the token.
        if (key.exists && key.holder == m_s.self && key.lease == lease)
            return done(core::CampaignResult{true, key, revision});
        done(core::CampaignResult{false, key, revision});
    });
}

void Etcd::deleteLeader(std::int64_t createRevision, std::function<void(Result<Ok>)> done) {
    const std::string k = quote(base64::encode(m_leaderKey));
    std::string body = "{\"compare\":[{\"key\":" + k +
                       ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":" + str(createRevision) +
                       "}],\"success\":[{\"request_delete_range\":{\"key\":" + k + "}}]}";
    std::weak_ptr<bool> alive = m_alive;
    call("kv/txn", body, [this, alive, createRevision, done](Result<json::Value> r) {
        if (alive.expired()) return;
        if (r) return done(Ok{});  // deleted, or no longer ours: either way not held
        readLeader([createRevision, done, err = r.error().message](Result<core::LeaderRead> rr) {
            if (rr && (!rr->key.exists || rr->key.createRevision != createRevision)) return done(Ok{});
            done(Error{"deleting the leader key failed: " + err});
        });
    });
}

core::Duration Etcd::silenceLimit() const {
    if (m_s.watchSilence.count() > 0) return m_s.watchSilence;
    // The keepalives of this replica go out every TTL/3 to the same member: with some slack
    // for their round trip, a member silent longer than that is probed.
    if (m_askedTtl.count() > 0) return core::keepalivePeriod(m_askedTtl) + core::Duration(100);
    return m_s.requestTimeout;
}

void Etcd::watchLeader(std::int64_t fromRevision, std::function<void(const core::WatchEvent&)> onEvent,
                       std::function<void(const std::string&)> onBroken) {
    cancelWatch();
    m_watching = true;
    ++m_watchGeneration;
    m_onEvent = std::move(onEvent);
    m_onBroken = std::move(onBroken);
    m_watchSeen = fromRevision - 1;
    const core::TimePoint now = sd::EventLoop::now();
    core::TimePoint at = now;
    if (m_quickBreaks > 0) {
        // A watch cancelled right after it opened (compaction, auth, a member going away)
        // would otherwise be reopened as fast as the loop turns.
        core::Duration d = m_endpoints.options().backoffBase;
        for (int k = 1; k < m_quickBreaks && d < m_endpoints.options().backoffCap; ++k) d *= 2;
        at = now + m_endpoints.jitter(std::min(d, m_endpoints.options().backoffCap));
    }
    at = std::max(at, m_endpoints.nextRoundAt());
    if (at <= now) return openWatch();
    // The watch starts at fromRevision: an event of the delay is delivered once it opens.
    m_watchOpen = m_loop.addTimer(at, [this] {
        sd::Source keep = std::move(m_watchOpen);
        openWatch();
    });
}

void Etcd::openWatch() {
    if (!m_s.user.empty() && (m_token.empty() || m_authenticating)) {
        // Like every request, the watch waits for the token: without it etcd cancels it.
        std::weak_ptr<bool> alive = m_alive;
        const std::uint64_t generation = m_watchGeneration;
        authenticate([this, alive, generation](Result<Ok> r) {
            if (alive.expired() || !m_watching || generation != m_watchGeneration) return;
            if (!r) return breakWatch(r.error().message);
            openWatch();
        });
        return;
    }
    m_watchBuffer.clear();
    m_watchEndpoint = m_endpoints.preferred();
    m_watchOpenedAt = m_watchProgressAt = sd::EventLoop::now();
    m_partialSince = {};
    m_probing = false;
    // The range readLeader reads: the control keys and the leader key.
    std::string body = "{\"create_request\":{\"key\":" + quote(base64::encode(m_controlPrefix)) +
                       ",\"range_end\":" + quote(base64::encode(m_leaderKey + std::string(1, '\0'))) +
                       ",\"start_revision\":" + str(m_watchSeen + 1) + "}}";
    std::weak_ptr<bool> alive = m_alive;
    const std::uint64_t generation = m_watchGeneration;
    m_watchRequest = m_http.post(
        m_s.endpoints[m_watchEndpoint] + "/v3/watch", body, headers(), std::chrono::milliseconds(0),
        [this, alive, generation](HttpResponse resp) {
            if (alive.expired() || generation != m_watchGeneration) return;
            m_watchRequest = 0;
            if (!m_watchBuffer.empty()) onWatchData("\n");  // an error line has no trailing newline
            if (!m_watching || generation != m_watchGeneration) return;
            // A member that refuses or fails the watch is not where the next one should go.
            if (resp.curl != CURLE_OK || resp.status / 100 != 2)
                m_endpoints.failed(m_watchEndpoint, sd::EventLoop::now());
            breakWatch("watch stream ended: " + resp.describe());
        },
        [this, alive, generation](std::string_view chunk) {
            if (alive.expired() || generation != m_watchGeneration) return;
            onWatchData(chunk);
        });
    armWatchCheck();
}

void Etcd::armWatchCheck() {
    core::Duration period = std::max(core::Duration(50), silenceLimit() / 4);
    m_watchTimer = m_loop.addTimer(sd::EventLoop::now() + period, [this] {
        sd::Source keep = std::move(m_watchTimer);
        checkWatch();
    });
}

void Etcd::checkWatch() {
    if (!m_watching || !m_watchRequest) return;
    const core::TimePoint now = sd::EventLoop::now();
    const core::Duration limit = silenceLimit();
    // Bytes are not progress: a line that never ends keeps a dripping stream "busy" forever.
    if (!m_watchBuffer.empty() && now - m_partialSince >= limit)
        return breakWatch("watch stream stalled in the middle of a line for " +
                          std::to_string((now - m_partialSince).count()) + " ms");
    const core::TimePoint proof = std::max(m_watchProgressAt, m_endpoints.lastSuccess(m_watchEndpoint));
    if (now - proof >= limit && !m_probing) probeWatchMember();
    armWatchCheck();
}

void Etcd::probeWatchMember() {
    // A request that needs the member and its leader (hasleader, linearizable): an answer
    // proves the watch's member is alive; a failure moves the watch.
    m_probing = true;
    const std::size_t index = m_watchEndpoint;
    const std::uint64_t generation = m_watchGeneration;
    std::weak_ptr<bool> alive = m_alive;
    m_http.post(m_s.endpoints[index] + "/v3/kv/range",
                "{\"key\":" + quote(base64::encode(m_leaderKey)) + ",\"count_only\":true}", headers(),
                m_s.requestTimeout, [this, alive, index, generation](HttpResponse resp) {
                    if (alive.expired()) return;
                    if (generation == m_watchGeneration) m_probing = false;
                    bool answered =
                        resp.curl == CURLE_OK && !resp.tooLarge &&
                        (definitive(resp.status) || (resp.status / 100 == 2 && parseReply(resp.body, "kv/range")));
                    if (answered)
                        m_endpoints.succeeded(index, sd::EventLoop::now());
                    else
                        endpointFailed(index, "probe of the watch's member: " + resp.describe());
                });
}

void Etcd::onWatchData(std::string_view chunk) {
    const core::TimePoint now = sd::EventLoop::now();
    if (m_watchBuffer.empty() && !chunk.empty()) m_partialSince = now;
    m_watchBuffer.append(chunk);
    const std::uint64_t generation = m_watchGeneration;
    // Lines are taken by offset and the buffer shortened once: erasing each line from the
    // front would move the rest of a 1 MiB chunk for every line (quadratic).
    // (An early return leaves the buffer as it is: the watch is closed, and a new one starts
    // with an empty buffer.)
    std::size_t from = 0, nl;
    bool controlChanged = false;
    while ((nl = m_watchBuffer.find('\n', from)) != std::string::npos) {
        std::string_view line(m_watchBuffer.data() + from, nl - from);
        from = nl + 1;
        m_partialSince = now;
        if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
        auto v = parseReply(line, "watch");
        if (!v) return breakWatch(v.error().message);
        if (auto msg = errorMessage(v.value()); !msg.empty()) {
            // hasleader: the member lost its leader; reopen elsewhere, not on it.
            if (msg.find("no leader") != std::string::npos) m_endpoints.failed(m_watchEndpoint, now);
            return breakWatch("watch error: " + msg);
        }
        const json::Value* result = v->find("result");
        if (!result || result->type != json::Type::Object) return breakWatch("watch line without result");
        m_watchProgressAt = now;
        if (const json::Value* c = result->find("canceled"); c && c->type == json::Type::Bool && c->boolean) {
            // Compacted or unauthorised watches are cancelled but the stream stays open.
            std::string why = "watch cancelled by etcd";
            if (const json::Value* r = result->find("cancel_reason"); r && r->type == json::Type::String)
                why += ": " + text::sanitize(r->text, 160);
            if (intField(result, "compact_revision")) why += " (compacted)";
            return breakWatch(why);
        }
        const json::Value* events = result->find("events");
        if (!events) continue;
        if (events->type != json::Type::Array) return breakWatch("watch events are not an array");
        for (const auto& ev : events->items) {
            const json::Value* kv = ev.find("kv");
            if (!kv) continue;
            core::WatchEvent out;
            out.revision = intField(kv, "mod_revision");
            // Revisions never go backwards: an event at or below one already applied (or
            // before the watch's start) is stale or replayed, and would demote for nothing.
            if (out.revision <= m_watchSeen) {
                log::debug("dropping a watch event at revision " + std::to_string(out.revision) + " (seen " +
                           std::to_string(m_watchSeen) + ")");
                continue;
            }
            const json::Value* type = ev.find("type");
            const bool deleted = type && type->type == json::Type::String && type->text == "DELETE";
            std::string key;
            if (const json::Value* k = kv->find("key"); k && k->type == json::Type::String)
                key = base64::decode(k->text).value_or("");
            if (key != m_leaderKey) {
                m_watchSeen = out.revision;
                m_maxRevision = std::max(m_maxRevision, out.revision);
                std::optional<std::string> value;
                if (!deleted) {
                    const json::Value* v = kv->find("value");
                    value = v && v->type == json::Type::String ? base64::decode(v->text).value_or("") : "";
                }
                controlChanged = applyControl(key, value, intField(kv, "lease"), out.revision) || controlChanged;
                continue;
            }
            if (deleted) {
                out.key = core::LeaderKey{};  // a lease expiry looks exactly like a delete
            } else {
                out.key = parseLeaderKv(*kv);
                if (out.key.createRevision <= 0 || out.key.createRevision > out.revision)
                    return breakWatch("watch event with an invalid create_revision");
            }
            m_watchSeen = out.revision;
            m_maxRevision = std::max(m_maxRevision, out.revision);
            if (m_onEvent) m_onEvent(out);
            if (!m_watching || generation != m_watchGeneration) return;  // the handler closed the watch
        }
    }
    m_watchBuffer.erase(0, from);
    if (m_watchBuffer.empty()) m_partialSince = {};
    // Control keys are told once for everything that arrived together: a request written and
    // withdrawn while this replica was frozen is not carried out from the first of the two.
    if (controlChanged && m_onControl) m_onControl(m_control);
    if (!m_watching || generation != m_watchGeneration) return;
    if (m_watchBuffer.size() > kMaxWatchLine) return breakWatch("watch line longer than 256 KiB");
}

void Etcd::breakWatch(const std::string& why) {
    if (!m_watching) return;
    auto onBroken = std::move(m_onBroken);
    const core::TimePoint now = sd::EventLoop::now();
    m_quickBreaks = now - m_watchOpenedAt < kQuickBreak ? m_quickBreaks + 1 : 0;
    m_watching = false;
    ++m_watchGeneration;
    m_onBroken = nullptr;
    m_onEvent = nullptr;
    m_watchTimer.reset();
    m_watchOpen.reset();
    m_probing = false;
    // We may be inside curl's write callback, where removing the handle is forbidden:
    // close the stream from the loop.
    RequestId id = m_watchRequest;
    m_watchRequest = 0;
    if (id) {
        m_toCancel.push_back(id);
        if (!m_watchDefer)
            m_watchDefer = m_loop.addTimer(now, [this] {
                sd::Source keep = std::move(m_watchDefer);
                auto ids = std::move(m_toCancel);
                m_toCancel.clear();
                for (RequestId r : ids) m_http.cancel(r);
            });
    }
    if (onBroken) onBroken(why);
}

void Etcd::markHandover(std::int64_t createRevision, std::int64_t lease, const std::string& target,
                        std::function<void(Result<Ok>)> done) {
    const std::string k = quote(base64::encode(m_leaderKey));
    std::string body = "{\"compare\":[{\"key\":" + k +
                       ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":" + str(createRevision) +
                       "}],\"success\":[{\"request_put\":{\"key\":" + k +
                       ",\"value\":" + quote(base64::encode(encodeLeaderValue(m_s.self, target, m_campaignedFast))) + ",\"lease\":" + str(lease) +
                       "}}]}";
    call("kv/txn", body, [done](Result<json::Value> r) {
        if (!r) return done(r.error());
        done(Ok{});
    });
}

void Etcd::putMember(std::int64_t lease, const MemberInfo& info, std::function<void(Result<Ok>)> done) {
    std::string body = "{\"key\":" + quote(base64::encode(m_membersPrefix + m_s.self)) +
                       ",\"value\":" + quote(base64::encode(encodeMember(info))) + ",\"lease\":" + str(lease) + "}";
    call("kv/put", body, [done](Result<json::Value> r) {
        if (!r) return done(r.error());
        done(Ok{});
    });
}

void Etcd::readMembers(std::function<void(Result<std::vector<MemberInfo>>)> done) {
    // A prefix range: range_end is the prefix with its last byte incremented.
    std::string end = m_membersPrefix;
    end.back() = static_cast<char>(end.back() + 1);
    std::string body = "{\"key\":" + quote(base64::encode(m_membersPrefix)) + ",\"range_end\":" + quote(base64::encode(end)) + "}";
    std::size_t prefixLength = m_membersPrefix.size();
    call("kv/range", body, [done, prefixLength](Result<json::Value> r) {
        if (!r) return done(r.error());
        std::vector<MemberInfo> members;
        if (const json::Value* kvs = r->find("kvs"))
            for (const auto& kv : kvs->items) {
                if (members.size() >= kMaxMembers) break;
                const json::Value* k = kv.find("key");
                auto key = k ? base64::decode(k->text) : std::nullopt;
                if (!key || key->size() <= prefixLength) continue;
                std::string value;
                if (const json::Value* v = kv.find("value"); v && v->type == json::Type::String)
                    value = base64::decode(v->text).value_or("");
                members.push_back(decodeMember(std::string_view(*key).substr(prefixLength, kMaxIdBytes), value));
            }
        done(members);
    });
}

void Etcd::cancelWatch() {
    m_watching = false;
    ++m_watchGeneration;
    m_onBroken = nullptr;
    m_onEvent = nullptr;
    m_watchTimer.reset();
    m_watchOpen.reset();
    m_probing = false;
    if (m_watchRequest) m_http.cancel(m_watchRequest);
    m_watchRequest = 0;
}

}  // namespace prom::store

#include "store/etcd.hpp"

#include "common/base64.hpp"
#include "common/log.hpp"

namespace prom::store {
namespace {

using json::quote;

std::string str(std::int64_t v) { return "\"" + std::to_string(v) + "\""; }

Result<json::Value> parseJson(const std::string& body, const char* what) {
    auto parsed = json::parse(body);
    if (auto* e = std::get_if<json::SyntaxError>(&parsed))
        return Error{std::string("unparseable etcd reply to ") + what + " at byte " + std::to_string(e->offset) + ": " + e->message};
    return std::get<json::Value>(std::move(parsed));
}

std::int64_t intField(const json::Value* v, const char* key) {
    if (!v) return 0;
    const json::Value* f = v->find(key);
    if (!f) return 0;  // etcd omits zero values
    return f->asInt().value_or(0);
}

// etcd's error shapes: unary {"error":"...","message":"...","code":N}; stream
// {"error":{"grpc_code":N,"message":"..."}}.
std::string errorMessage(const json::Value& root) {
    const json::Value* e = root.find("error");
    if (!e) return "";
    if (e->type == json::Type::String) {
        if (const json::Value* m = root.find("message"); m && m->type == json::Type::String) return m->text;
        return e->text;
    }
    if (const json::Value* m = e->find("message")) return m->text;
    return "error";
}

bool noLeader(const HttpResponse& r) { return r.status == 503 && r.body.find("no leader") != std::string::npos; }

}  // namespace

core::LeaderKey parseLeaderKv(const json::Value& kv) {
    core::LeaderKey k;
    k.exists = true;
    if (const json::Value* v = kv.find("value"); v && v->type == json::Type::String)
        k.holder = base64::decode(v->text).value_or("");
    // Fast mode marks its keys "ID\nmode=fast" (replica ids never contain a newline).
    if (auto nl = k.holder.find('\n'); nl != std::string::npos) {
        k.fast = k.holder.substr(nl + 1) == "mode=fast";
        k.holder.resize(nl);
    }
    // Replica ids never contain '>' (config validation), so it can separate the successor.
    if (auto gt = k.holder.find('>'); gt != std::string::npos) {
        k.handoverTo = k.holder.substr(gt + 1);
        k.holder.resize(gt);
    }
    k.lease = intField(&kv, "lease");
    k.createRevision = intField(&kv, "create_revision");
    return k;
}

Etcd::Etcd(sd::EventLoop& loop, Http& http, EtcdSettings settings)
    : m_loop(loop), m_http(http), m_s(std::move(settings)) {
    for (auto& ep : m_s.endpoints)
        while (!ep.empty() && ep.back() == '/') ep.pop_back();
    m_leaderKey = m_s.prefix + "/" + m_s.app + "/leader";
    m_membersPrefix = m_s.prefix + "/" + m_s.app + "/members/";
}

Etcd::~Etcd() {
    *m_alive = false;
    cancelWatch();
}

std::vector<std::string> Etcd::headers() const {
    // hasleader: a member without a leader fails fast (503) instead of hanging 7 s, and
    // cancels watches ~4 s after losing its leader instead of going silent forever.
    std::vector<std::string> h{"Grpc-Metadata-hasleader: true"};
    if (!m_token.empty()) h.push_back("Authorization: " + m_token);  // raw token, no "Bearer"
    return h;
}

void Etcd::authenticate(std::function<void(Result<Ok>)> done) {
    m_authWaiters.push_back(std::move(done));
    if (m_authenticating) return;
    m_authenticating = true;
    std::string body = "{\"name\":" + quote(m_s.user) + ",\"password\":" + quote(m_s.password) + "}";
    std::weak_ptr<bool> alive = m_alive;
    // Authentication itself goes through call() without a token.
    m_token.clear();
    auto finish = [this, alive](Result<Ok> r) {
        if (alive.expired()) return;
        m_authenticating = false;
        auto waiters = std::move(m_authWaiters);
        m_authWaiters.clear();
        for (auto& w : waiters) w(r);
    };
    std::string saveUser = m_s.user;
    m_s.user.clear();  // no recursion into authenticate for this one request
    call("auth/authenticate", body, [this, finish, saveUser](Result<std::string> r) {
        m_s.user = saveUser;
        if (!r) return finish(Error{"etcd authentication as " + saveUser + " failed: " + r.error().message});
        auto v = parseJson(r.value(), "auth/authenticate");
        if (!v) return finish(v.error());
        const json::Value* t = v->find("token");
        if (!t || t->text.empty()) return finish(Error{"etcd authentication returned no token"});
        m_token = t->text;
        finish(Ok{});
    });
}

void Etcd::call(const std::string& path, const std::string& body, Reply done, std::size_t attempt, bool reauth) {
    if (!m_s.user.empty() && m_token.empty()) {
        authenticate([this, path, body, done, attempt](Result<Ok> r) {
            if (!r) return done(r.error());
            call(path, body, done, attempt, true);
        });
        return;
    }
    const std::size_t n = m_s.endpoints.size();
    const std::size_t index = (m_endpoint + attempt) % n;
    const std::string url = m_s.endpoints[index] + "/v3/" + path;
    std::weak_ptr<bool> alive = m_alive;
    m_http.post(url, body, headers(), m_s.requestTimeout, [=, this](HttpResponse resp) {
        if (alive.expired()) return;
        // Not connected, or refused before any proposal (no leader): safe to try the next
        // endpoint, even for a write.
        if ((resp.notConnected() || noLeader(resp)) && attempt + 1 < n) {
            log::debug("etcd " + url + ": " + resp.describe() + "; trying the next endpoint");
            m_endpoint = (index + 1) % n;
            call(path, body, done, 0, reauth);
            return;
        }
        if (resp.curl != CURLE_OK) {
            if (m_watchRequest) m_watchSuspect = true;
            return done(Error{url + ": " + resp.describe()});
        }
        if (resp.status == 401 && !m_s.user.empty() && !reauth) {
            m_token.clear();  // expired simple token: authenticate again, once
            call(path, body, done, attempt, true);
            return;
        }
        if (resp.status / 100 != 2) return done(Error{url + ": " + resp.describe()});
        m_endpoint = index;
        if (m_watchSuspect && m_watchRequest) {
            // The connection failed since the watch was opened: it may be a dead TCP stream
            // that will never deliver the next DELETE. Reopen it from a fresh read.
            m_watchSuspect = false;
            breakWatch("the connection to etcd failed since the watch was opened");
        }
        done(std::move(resp.body));
    });
}

void Etcd::grantLease(core::Duration ttl, std::function<void(Result<Lease>)> done) {
    auto seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
    call("lease/grant", "{\"TTL\":" + str(seconds) + "}", [done](Result<std::string> r) {
        if (!r) return done(r.error());
        auto v = parseJson(r.value(), "lease/grant");
        if (!v) return done(v.error());
        std::int64_t id = intField(&v.value(), "ID");
        std::int64_t granted = intField(&v.value(), "TTL");
        if (!id || granted <= 0) return done(Error{"etcd lease/grant reply without ID or TTL: " + r.value()});
        done(Lease{id, core::Duration(granted * 1000)});
    });
}

void Etcd::keepAlive(std::int64_t lease, std::function<void(Result<std::optional<core::Duration>>)> done) {
    // One POST = one keepalive; the gateway ends the response when the request body ends.
    call("lease/keepalive", "{\"ID\":" + str(lease) + "}", [done](Result<std::string> r) {
        if (!r) return done(r.error());
        auto v = parseJson(r.value(), "lease/keepalive");
        if (!v) return done(v.error());
        if (auto msg = errorMessage(v.value()); !msg.empty()) return done(Error{"etcd lease/keepalive: " + msg});
        const json::Value* result = v->find("result");
        if (!result) return done(Error{"etcd lease/keepalive reply without result: " + r.value()});
        // A dead lease is HTTP 200 without TTL.
        std::int64_t ttl = intField(result, "TTL");
        if (ttl <= 0) return done(std::optional<core::Duration>{});
        done(std::optional<core::Duration>(core::Duration(ttl * 1000)));
    });
}

void Etcd::revokeLease(std::int64_t lease, std::function<void(Result<Ok>)> done) {
    call("lease/revoke", "{\"ID\":" + str(lease) + "}", [done](Result<std::string> r) {
        if (!r && r.error().message.find("HTTP 404") == std::string::npos) return done(r.error());
        done(Ok{});  // 404: already gone
    });
}

void Etcd::readLeader(std::function<void(Result<core::LeaderRead>)> done) {
    call("kv/range", "{\"key\":" + quote(base64::encode(m_leaderKey)) + "}", [done](Result<std::string> r) {
        if (!r) return done(r.error());
        auto v = parseJson(r.value(), "kv/range");
        if (!v) return done(v.error());
        core::LeaderRead out{{}, intField(v->find("header"), "revision")};
        if (const json::Value* kvs = v->find("kvs"); kvs && !kvs->items.empty()) out.key = parseLeaderKv(kvs->items[0]);
        done(out);
    });
}

void Etcd::campaign(std::int64_t lease, std::function<void(Result<core::CampaignResult>)> done) {
    campaignAs(lease, false, std::move(done));
}

void Etcd::campaignFast(std::int64_t lease, std::function<void(Result<core::CampaignResult>)> done) {
    campaignAs(lease, true, std::move(done));
}

void Etcd::campaignAs(std::int64_t lease, bool fast, std::function<void(Result<core::CampaignResult>)> done) {
    const std::string k = quote(base64::encode(m_leaderKey));
    const std::string value = fast ? m_s.self + "\nmode=fast" : m_s.self;
    // Create-if-absent bound to our lease, with the current holder read in the same round trip.
    std::string body = "{\"compare\":[{\"key\":" + k + ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"0\"}]," +
                       "\"success\":[{\"request_put\":{\"key\":" + k + ",\"value\":" + quote(base64::encode(value)) +
                       ",\"lease\":" + str(lease) + "}}]," + "\"failure\":[{\"request_range\":{\"key\":" + k + "}}]}";
    std::weak_ptr<bool> alive = m_alive;
    call("kv/txn", body, [this, alive, lease, fast, done](Result<std::string> r) {
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
        auto v = parseJson(r.value(), "kv/txn");
        if (!v) return done(v.error());
        std::int64_t revision = intField(v->find("header"), "revision");
        const json::Value* ok = v->find("succeeded");
        if (ok && ok->type == json::Type::Bool && ok->boolean) {
            core::LeaderKey key{true, m_s.self, lease, revision, {}, fast};
            return done(core::CampaignResult{true, key, revision});
        }
        core::LeaderKey key;
        if (const json::Value* resp = v->find("responses"); resp && !resp->items.empty())
            if (const json::Value* range = resp->items[0].find("response_range"))
                if (const json::Value* kvs = range->find("kvs"); kvs && !kvs->items.empty()) key = parseLeaderKv(kvs->items[0]);
        done(core::CampaignResult{false, key, revision});
    });
}

void Etcd::deleteLeader(std::int64_t createRevision, std::function<void(Result<Ok>)> done) {
    const std::string k = quote(base64::encode(m_leaderKey));
    std::string body = "{\"compare\":[{\"key\":" + k + ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":" +
                       str(createRevision) + "}],\"success\":[{\"request_delete_range\":{\"key\":" + k + "}}]}";
    std::weak_ptr<bool> alive = m_alive;
    call("kv/txn", body, [this, alive, createRevision, done](Result<std::string> r) {
        if (alive.expired()) return;
        if (r) return done(Ok{});  // deleted, or no longer ours: either way not held
        readLeader([createRevision, done, err = r.error().message](Result<core::LeaderRead> rr) {
            if (rr && (!rr->key.exists || rr->key.createRevision != createRevision)) return done(Ok{});
            done(Error{"deleting the leader key failed: " + err});
        });
    });
}

void Etcd::watchLeader(std::int64_t fromRevision, std::function<void(const core::WatchEvent&)> onEvent,
                       std::function<void(const std::string&)> onBroken) {
    cancelWatch();
    m_onEvent = std::move(onEvent);
    m_onBroken = std::move(onBroken);
    m_watchBuffer.clear();
    m_watchSuspect = false;
    m_lastWatchData = sd::EventLoop::now();
    const std::size_t index = m_endpoint % m_s.endpoints.size();
    std::string body = "{\"create_request\":{\"key\":" + quote(base64::encode(m_leaderKey)) +
                       ",\"start_revision\":" + str(fromRevision) + "}}";
    std::weak_ptr<bool> alive = m_alive;
    m_watchRequest = m_http.post(
        m_s.endpoints[index] + "/v3/watch", body, headers(), std::chrono::milliseconds(0),
        [this, alive](HttpResponse resp) {
            if (alive.expired()) return;
            m_watchRequest = 0;
            if (!m_watchBuffer.empty()) onWatchData("\n");  // an error line has no trailing newline
            if (m_onBroken) breakWatch("watch stream ended: " + resp.describe());
        },
        [this](std::string_view chunk) { onWatchData(chunk); });
    armSilenceCheck();
}

void Etcd::armSilenceCheck() {
    m_watchTimer = m_loop.addTimer(sd::EventLoop::now() + m_s.watchSilence / 4, [this] {
        if (!m_watchRequest) return;
        if (sd::EventLoop::now() - m_lastWatchData >= m_s.watchSilence)
            return breakWatch("watch silent for " + std::to_string(m_s.watchSilence.count() / 1000) + " s");
        armSilenceCheck();
    });
}

void Etcd::onWatchData(std::string_view chunk) {
    m_lastWatchData = sd::EventLoop::now();
    m_watchBuffer.append(chunk);
    if (m_watchBuffer.size() > (8u << 20)) return breakWatch("watch line longer than 8 MiB");
    std::size_t nl;
    while ((nl = m_watchBuffer.find('\n')) != std::string::npos) {
        std::string line = m_watchBuffer.substr(0, nl);
        m_watchBuffer.erase(0, nl + 1);
        if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
        auto v = parseJson(line, "watch");
        if (!v) return breakWatch(v.error().message);
        if (auto msg = errorMessage(v.value()); !msg.empty()) return breakWatch("watch error: " + msg);
        const json::Value* result = v->find("result");
        if (!result) continue;
        if (const json::Value* c = result->find("canceled"); c && c->boolean) {
            // Compacted or unauthorised watches are cancelled but the stream stays open.
            std::string why = "watch cancelled by etcd";
            if (const json::Value* r = result->find("cancel_reason")) why += ": " + r->text;
            if (intField(result, "compact_revision")) why += " (compacted)";
            return breakWatch(why);
        }
        const json::Value* events = result->find("events");
        if (!events) continue;
        for (const auto& ev : events->items) {
            const json::Value* kv = ev.find("kv");
            if (!kv) continue;
            core::WatchEvent out;
            out.revision = intField(kv, "mod_revision");
            const json::Value* type = ev.find("type");
            if (type && type->text == "DELETE")
                out.key = core::LeaderKey{};  // a lease expiry looks exactly like a delete
            else
                out.key = parseLeaderKv(*kv);
            if (m_onEvent) m_onEvent(out);
            if (!m_watchRequest) return;  // the handler closed the watch
        }
    }
}

void Etcd::breakWatch(const std::string& why) {
    auto onBroken = std::move(m_onBroken);
    m_onBroken = nullptr;
    m_onEvent = nullptr;
    m_watchTimer.reset();
    // We may be inside curl's write callback, where removing the handle is forbidden:
    // close the stream from the loop.
    RequestId id = m_watchRequest;
    m_watchRequest = 0;
    if (id) {
        m_toCancel.push_back(id);
        if (!m_watchDefer)
            m_watchDefer = m_loop.addTimer(sd::EventLoop::now(), [this] {
                for (RequestId r : m_toCancel) m_http.cancel(r);
                m_toCancel.clear();
                m_watchDefer.reset();
            });
    }
    if (onBroken) onBroken(why);
}

void Etcd::markHandover(std::int64_t createRevision, std::int64_t lease, const std::string& target,
                        std::function<void(Result<Ok>)> done) {
    const std::string k = quote(base64::encode(m_leaderKey));
    std::string body = "{\"compare\":[{\"key\":" + k + ",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":" +
                       str(createRevision) + "}],\"success\":[{\"request_put\":{\"key\":" + k + ",\"value\":" +
                       quote(base64::encode(m_s.self + ">" + target)) + ",\"lease\":" + str(lease) + "}}]}";
    call("kv/txn", body, [done](Result<std::string> r) {
        if (!r) return done(r.error());
        done(Ok{});
    });
}

void Etcd::putMember(std::int64_t lease, std::function<void(Result<Ok>)> done) {
    std::string body = "{\"key\":" + quote(base64::encode(m_membersPrefix + m_s.self)) + ",\"value\":" +
                       quote(base64::encode(m_s.self)) + ",\"lease\":" + str(lease) + "}";
    call("kv/put", body, [done](Result<std::string> r) {
        if (!r) return done(r.error());
        done(Ok{});
    });
}

void Etcd::readMembers(std::function<void(Result<std::vector<std::string>>)> done) {
    // A prefix range: range_end is the prefix with its last byte incremented.
    std::string end = m_membersPrefix;
    end.back() = static_cast<char>(end.back() + 1);
    std::string body = "{\"key\":" + quote(base64::encode(m_membersPrefix)) + ",\"range_end\":" +
                       quote(base64::encode(end)) + ",\"keys_only\":true}";
    std::size_t prefixLength = m_membersPrefix.size();
    call("kv/range", body, [done, prefixLength](Result<std::string> r) {
        if (!r) return done(r.error());
        auto v = parseJson(r.value(), "kv/range");
        if (!v) return done(v.error());
        std::vector<std::string> ids;
        if (const json::Value* kvs = v->find("kvs"))
            for (const auto& kv : kvs->items)
                if (const json::Value* k = kv.find("key"))
                    if (auto key = base64::decode(k->text); key && key->size() > prefixLength)
                        ids.push_back(key->substr(prefixLength));
        done(ids);
    });
}

void Etcd::cancelWatch() {
    m_onBroken = nullptr;
    m_onEvent = nullptr;
    m_watchTimer.reset();
    if (m_watchRequest) m_http.cancel(m_watchRequest);
    m_watchRequest = 0;
}

}  // namespace prom::store

#include "ctl/cluster_view.hpp"

#include <curl/curl.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "common/base64.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "store/etcd.hpp"
#include "store/http.hpp"

namespace prom::ctl {
namespace {

struct Reply {
    long status = 0;
    std::string body;
};

std::size_t collect(char* data, std::size_t size, std::size_t n, void* out) {
    auto* body = static_cast<std::string*>(out);
    // A reply this large is not etcd answering a range of a few keys.
    if (body->size() + size * n > store::kMaxReplyBytes) return 0;
    body->append(data, size * n);
    return size * n;
}

Result<Reply> post(const config::Config& c, const std::string& url, const std::string& body, const std::string& token,
                   std::chrono::milliseconds timeout) {
    std::unique_ptr<CURL, void (*)(CURL*)> h(curl_easy_init(), curl_easy_cleanup);
    if (!h) return Error{"curl_easy_init failed"};
    Reply r;
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: " + token).c_str());
    curl_easy_setopt(h.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(h.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(h.get(), CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(h.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &r.body);
    if (!c.store.caFile.empty()) curl_easy_setopt(h.get(), CURLOPT_CAINFO, c.store.caFile.c_str());
    if (!c.store.certFile.empty()) curl_easy_setopt(h.get(), CURLOPT_SSLCERT, c.store.certFile.c_str());
    if (!c.store.keyFile.empty()) curl_easy_setopt(h.get(), CURLOPT_SSLKEY, c.store.keyFile.c_str());
    CURLcode rc = curl_easy_perform(h.get());
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) return Error{curl_easy_strerror(rc)};
    curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

Result<json::Value> parsed(const Reply& r, const std::string& what) {
    if (r.status != 200) return Error{what + ": HTTP " + std::to_string(r.status)};
    auto v = json::parse(r.body, json::kStoreLimits);
    if (auto* e = std::get_if<json::SyntaxError>(&v)) return Error{what + ": not JSON (" + e->message + ")"};
    return std::get<json::Value>(std::move(v));
}

std::string range(const std::string& key, const std::string& end) {
    std::string body = "{\"key\":" + json::quote(base64::encode(key));
    if (!end.empty()) body += ",\"range_end\":" + json::quote(base64::encode(end));
    return body + "}";
}

Result<ClusterView> readFrom(const config::Config& c, const std::string& endpoint, const std::string& password,
                             std::chrono::milliseconds timeout) {
    std::string base = endpoint;
    while (!base.empty() && base.back() == '/') base.pop_back();
    std::string token;
    if (!c.store.userid.empty()) {
        auto a = post(c, base + "/v3/auth/authenticate",
                      "{\"name\":" + json::quote(c.store.userid) + ",\"password\":" + json::quote(password) + "}", "", timeout);
        if (!a) return a.error();
        auto v = parsed(*a, "authentication as " + c.store.userid);
        if (!v) return v.error();
        if (const json::Value* t = v->find("token"); t && t->asString()) token = *t->asString();
    }
    const std::string app = c.store.prefix + "/" + c.appName;
    ClusterView view;
    view.endpoint = text::redactUrl(endpoint);
    std::string members = app + "/members/";
    std::string end = members;
    end.back() = static_cast<char>(end.back() + 1);
    auto m = post(c, base + "/v3/kv/range", range(members, end), token, timeout);
    if (!m) return m.error();
    auto mv = parsed(*m, "reading the member keys");
    if (!mv) return mv.error();
    if (const json::Value* kvs = mv->find("kvs"))
        for (const auto& kv : kvs->items)
            if (const json::Value* k = kv.find("key"))
                if (auto key = base64::decode(k->text); key && key->size() > members.size())
                    view.up.insert(key->substr(members.size()));
    auto l = post(c, base + "/v3/kv/range", range(app + "/leader", ""), token, timeout);
    if (!l) return l.error();
    auto lv = parsed(*l, "reading the leader key");
    if (!lv) return lv.error();
    if (const json::Value* kvs = lv->find("kvs"); kvs && !kvs->items.empty()) {
        // The daemon's own reading of the value (holder, successor, fast mark), sanitized.
        core::LeaderKey key = store::parseLeaderKv(kvs->items[0]);
        view.leader = key.holder;
        view.handoverTo = key.handoverTo;
        view.token = key.createRevision;
    }
    return view;
}

}  // namespace

Result<ClusterView> readCluster(const config::Config& c, const std::string& password, std::chrono::milliseconds timeout) {
    if (c.store.backend != config::Backend::Etcd) return Error{"the cluster view reads etcd; this configuration uses MUSIC"};
    std::string errors;
    for (const auto& ep : c.store.endpoints) {
        auto v = readFrom(c, ep, password, timeout);
        if (v) return v;
        errors += (errors.empty() ? "" : "; ") + text::redactUrl(ep) + ": " + text::sanitize(v.error().message);
    }
    return Error{"no store endpoint answered (" + errors + ")"};
}

}  // namespace prom::ctl

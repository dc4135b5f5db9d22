#include "store/http.hpp"

#include <strings.h>

#include <stdexcept>

#include "common/log.hpp"
#include "common/text.hpp"

namespace prom::store {

struct Http::Request {
    Http* owner = nullptr;
    RequestId id = 0;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::string body;
    HttpResponse response;
    Done done;
    Data onData;
    std::string pending;  ///< stream data not yet handed to onData
    std::size_t maxBody = kMaxReplyBytes;
    char errorBuffer[CURL_ERROR_SIZE] = {};
    ~Request() {
        if (easy) {
            curl_multi_remove_handle(owner->m_multi, easy);
            curl_easy_cleanup(easy);
        }
        curl_slist_free_all(headers);
    }
};

namespace {

// curl's codes for TLS failures do not say what to check, and a client certificate the server
// refuses surfaces as a send or receive error on an https connection (TLS 1.3 finishes the
// handshake before the server checks it). Maps them to "TLS: " and the setting to look at.
std::string tlsProblem(CURLcode code, bool https) {
    switch (code) {
        case CURLE_PEER_FAILED_VERIFICATION:
            return "the server's certificate was not accepted: check ca-file (the CA that signed etcd's --cert-file), "
                   "the certificate's validity dates and that its subjectAltName names the endpoint's host";
        case CURLE_SSL_CACERT_BADFILE:
            return "cannot load ca-file: check its path, permissions and that it is PEM";
        case CURLE_SSL_CERTPROBLEM:
            return "cannot use cert-file/key-file: check their paths and permissions, that both are PEM and that "
                   "key-file is the key of cert-file";
        case CURLE_SSL_CONNECT_ERROR:
            return "handshake failed: check that the endpoint serves https, and cert-file/key-file (a client "
                   "certificate signed by etcd's --trusted-ca-file, not expired)";
#if LIBCURL_VERSION_NUM >= 0x074d00
        case CURLE_SSL_CLIENTCERT:
#endif
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
            return "check ca-file, cert-file and key-file";
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
            if (https)
                return "the server closed the connection: it probably refused the client certificate; check cert-file "
                       "and key-file (missing, expired, or not signed by etcd's --trusted-ca-file)";
            return {};
        default:
            return {};
    }
}

}  // namespace

std::string HttpResponse::describe() const {
    if (error.rfind("TLS: ", 0) == 0) return text::sanitize(error, 400);
    if (tooLarge) return kTooLargeText;
    if (curl != CURLE_OK) return std::string(curl_easy_strerror(curl)) + (error.empty() ? "" : " (" + text::sanitize(error, 200) + ")");
    std::string b = text::excerpt(body);
    return "HTTP " + std::to_string(status) + (b.empty() ? "" : ": " + b);
}

Http::Http(sd::EventLoop& loop, HttpOptions options) : m_loop(loop), m_options(std::move(options)) {
    static bool initialized = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
    if (!initialized) throw std::runtime_error("curl_global_init failed");
    m_multi = curl_multi_init();
    if (!m_multi) throw std::runtime_error("curl_multi_init failed");
    curl_multi_setopt(m_multi, CURLMOPT_SOCKETFUNCTION, &Http::onSocket);
    curl_multi_setopt(m_multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(m_multi, CURLMOPT_TIMERFUNCTION, &Http::onTimer);
    curl_multi_setopt(m_multi, CURLMOPT_TIMERDATA, this);
}

Http::~Http() {
    m_requests.clear();
    m_sockets.clear();
    m_timer.reset();
    curl_multi_cleanup(m_multi);
}

void Http::rethrowFromCallback() {
    if (!m_callbackFailure) return;
    std::exception_ptr e = std::move(m_callbackFailure);
    m_callbackFailure = nullptr;
    std::rethrow_exception(e);
}

int Http::onSocket(CURL*, curl_socket_t fd, int what, void* selfp, void*) {
    auto* self = static_cast<Http*>(selfp);
    try {
        return self->socketChanged(fd, what);
    } catch (...) {
        self->m_callbackFailure = std::current_exception();
        return -1;  // curl fails the transfers on this socket
    }
}

int Http::socketChanged(curl_socket_t fd, int what) {
    Http* self = this;
    if (what == CURL_POLL_REMOVE) {
        self->m_sockets.erase(fd);
        return 0;
    }
    std::uint32_t events = 0;
    if (what & CURL_POLL_IN) events |= EPOLLIN;
    if (what & CURL_POLL_OUT) events |= EPOLLOUT;
    auto it = self->m_sockets.find(fd);
    if (it != self->m_sockets.end()) {
        sd_event_source_set_io_events(it->second.get(), events);
        return 0;
    }
    self->m_sockets[fd] = self->m_loop.addIo(fd, events, [self, fd](std::uint32_t revents) {
        int flags = 0;
        if (revents & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT) flags |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR) flags |= CURL_CSELECT_ERR;
        self->action(fd, flags);
    });
    return 0;
}

int Http::onTimer(CURLM*, long timeoutMs, void* selfp) {
    auto* self = static_cast<Http*>(selfp);
    try {
        if (timeoutMs < 0) {
            self->m_timer.reset();
            return 0;
        }
        // curl forbids calling socket_action from inside this callback: go through the loop.
        self->m_timer = self->m_loop.addTimer(sd::EventLoop::now() + std::chrono::milliseconds(timeoutMs),
                                              [self] { self->action(CURL_SOCKET_TIMEOUT, 0); });
        return 0;
    } catch (...) {
        self->m_callbackFailure = std::current_exception();
        return -1;
    }
}

void Http::action(curl_socket_t fd, int flags) {
    int running = 0;
    curl_multi_socket_action(m_multi, fd, flags, &running);
    rethrowFromCallback();
    finishDone();
}

void Http::finishDone() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(m_multi, &left)) {
        if (msg->msg != CURLMSG_DONE) continue;
        RequestId id = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &id);
        auto it = m_requests.find(id);
        if (it == m_requests.end()) continue;
        std::unique_ptr<Request> req = std::move(it->second);
        m_requests.erase(it);
        req->response.curl = msg->data.result;
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->response.status);
        long connectCode = 0;
        curl_easy_getinfo(req->easy, CURLINFO_HTTP_CONNECTCODE, &connectCode);
        double connectTime = 0;
        curl_easy_getinfo(req->easy, CURLINFO_CONNECT_TIME, &connectTime);
        req->response.connectFailed = connectTime == 0.0;
        req->response.error = req->errorBuffer;
        if (req->response.curl != CURLE_OK) {
            const char* scheme = nullptr;
            curl_easy_getinfo(req->easy, CURLINFO_SCHEME, &scheme);
            std::string problem = tlsProblem(req->response.curl, scheme && strcasecmp(scheme, "https") == 0);
            if (!problem.empty())
                req->response.error = "TLS: " + problem + " (" + curl_easy_strerror(req->response.curl) +
                                      (req->response.error.empty() ? "" : ": " + req->response.error) + ")";
        }
        if (req->onData && !req->pending.empty()) {
            std::string data = std::move(req->pending);
            req->onData(data);
        }
        Done done = std::move(req->done);
        HttpResponse resp = std::move(req->response);
        req.reset();
        if (done) done(std::move(resp));
    }
}

RequestId Http::request(const std::string& method, const std::string& url, const std::string& body,
                        const std::vector<std::string>& headers, std::chrono::milliseconds timeout, Done done, Data onData,
                        std::size_t maxBody) {
    auto req = std::make_unique<Request>();
    req->owner = this;
    req->maxBody = maxBody;
    req->id = m_next++;
    req->body = body;
    req->done = std::move(done);
    req->onData = std::move(onData);
    CURL* e = curl_easy_init();
    if (!e) throw std::runtime_error("curl_easy_init failed");
    req->easy = e;
    for (const auto& h : headers) req->headers = curl_slist_append(req->headers, h.c_str());
    // etcd's gateway wants no Expect for unary calls; an explicit empty header disables curl's.
    req->headers = curl_slist_append(req->headers, "Expect:");
    req->headers = curl_slist_append(req->headers, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    if (method == "GET") {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body.c_str());
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(req->body.size()));
        if (method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req->id);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errorBuffer);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(m_options.connectTimeout.count()));
    if (timeout.count() > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    // A partitioned peer never closes the TCP connection: keepalive probes find out.
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 2L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 1L);
    if (!m_options.caFile.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, m_options.caFile.c_str());
    if (!m_options.certFile.empty()) curl_easy_setopt(e, CURLOPT_SSLCERT, m_options.certFile.c_str());
    if (!m_options.keyFile.empty()) curl_easy_setopt(e, CURLOPT_SSLKEY, m_options.keyFile.c_str());
    // A store endpoint is http or https; never follow a reply elsewhere (curl does not
    // follow redirects unless asked, and a 3xx is a failure of that endpoint).
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    // h2c does not reach etcd's gateway; HTTP/2 only where TLS negotiates it.
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, +[](char* ptr, size_t size, size_t n, void* p) -> size_t {
        auto* r = static_cast<Request*>(p);
        try {
            std::string_view chunk(ptr, size * n);
            if (r->onData) {
                // Delivered from the loop, not from inside curl: the receiver may start or
                // cancel requests, which curl forbids within its callbacks.
                if (r->pending.size() + chunk.size() > kMaxPendingStreamBytes) {
                    r->response.tooLarge = true;
                    return 0;
                }
                r->pending.append(chunk);
                r->owner->scheduleDelivery();
            } else {
                // Replies of the store are small; a runaway body is cut off, not buffered.
                if (r->response.body.size() + chunk.size() > r->maxBody) {
                    r->response.tooLarge = true;
                    return 0;
                }
                r->response.body.append(chunk);
            }
            return size * n;
        } catch (...) {
            r->owner->m_callbackFailure = std::current_exception();
            return 0;  // ends the transfer; rethrown once curl has returned
        }
    });
    RequestId id = req->id;
    m_requests[id] = std::move(req);
    ++m_count;
    CURLMcode rc = curl_multi_add_handle(m_multi, e);
    rethrowFromCallback();
    if (rc != CURLM_OK) throw std::runtime_error(std::string("curl_multi_add_handle: ") + curl_multi_strerror(rc));
    return id;
}

void Http::cancel(RequestId id) {
    m_requests.erase(id);
    rethrowFromCallback();
}

void Http::scheduleDelivery() {
    if (m_delivery) return;
    m_delivery = m_loop.addTimer(sd::EventLoop::now(), [this] {
        sd::Source keep = std::move(m_delivery);  // re-armable from inside onData
        std::vector<RequestId> ids;
        for (auto& [id, r] : m_requests)
            if (!r->pending.empty()) ids.push_back(id);
        for (RequestId id : ids) {
            auto it = m_requests.find(id);
            if (it == m_requests.end()) continue;  // cancelled by an earlier receiver
            std::string data = std::move(it->second->pending);
            it->second->pending.clear();
            Data cb = it->second->onData;
            cb(data);
        }
    });
}

}  // namespace prom::store

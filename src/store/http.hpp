#pragma once
// Asynchronous HTTP over the libcurl multi interface, driven by the sd-event loop (no thread,
// no blocking call): CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION map curl's fds and timeout onto
// sd-event sources.
#include <curl/curl.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sd/event_loop.hpp"

namespace prom::store {

struct HttpOptions {
    std::chrono::milliseconds connectTimeout{1000};
    std::string caFile;
    std::string certFile;
    std::string keyFile;
};

/** Largest unary reply body kept; a longer one ends the transfer (store replies are small). */
inline constexpr std::size_t kMaxReplyBytes = 1u << 20;
/** How describe() names a reply cut off at its limit (callers that fall back on it match it). */
inline constexpr const char* kTooLargeText = "reply larger than the limit, cut off";
/** Largest stream data held before the receiver takes it (watch lines of a few hundred bytes;
 *  a stream that outruns the loop this far is cut off rather than buffered). */
inline constexpr std::size_t kMaxPendingStreamBytes = 256u << 10;

struct HttpResponse {
    CURLcode curl = CURLE_OK;  ///< transport result
    long status = 0;           ///< HTTP status, 0 when no response
    std::string body;
    std::string error;  ///< curl's message when curl != CURLE_OK
    /** The request never reached a server (safe to retry elsewhere, even a write). */
    bool notConnected() const {
        return curl == CURLE_COULDNT_CONNECT || curl == CURLE_COULDNT_RESOLVE_HOST ||
               (curl == CURLE_OPERATION_TIMEDOUT && status == 0 && body.empty() && connectFailed);
    }
    bool connectFailed = false;
    /** The body went past its cap and the transfer was cut off. */
    bool tooLarge = false;
    /** One-line description for logs: sanitized, with at most a short excerpt of the body. */
    std::string describe() const;
};

using RequestId = std::uint64_t;

class Http {
public:
    using Done = std::function<void(HttpResponse)>;
    using Data = std::function<void(std::string_view)>;

    Http(sd::EventLoop& loop, HttpOptions options);
    ~Http();
    Http(const Http&) = delete;
    Http& operator=(const Http&) = delete;

    /** POSTs body; done runs once with the whole response. timeout 0 = none (streams). */
    RequestId post(const std::string& url, const std::string& body, const std::vector<std::string>& headers,
                   std::chrono::milliseconds timeout, Done done, Data onData = nullptr,
                   std::size_t maxBody = kMaxReplyBytes) {
        return request("POST", url, body, headers, timeout, std::move(done), std::move(onData), maxBody);
    }
    /** Any method (GET, POST, PUT, DELETE); a body is sent when not empty or for POST/PUT.
     *  A body longer than maxBody (or, with onData, data held past kMaxPendingStreamBytes)
     *  ends the transfer with tooLarge set. */
    RequestId request(const std::string& method, const std::string& url, const std::string& body,
                      const std::vector<std::string>& headers, std::chrono::milliseconds timeout, Done done,
                      Data onData = nullptr, std::size_t maxBody = kMaxReplyBytes);
    /** Aborts a request; its done callback is not called. */
    void cancel(RequestId id);
    /** Requests sent since start (for benchmarks). */
    std::uint64_t requestCount() const { return m_count; }

private:
    struct Request;
    static int onSocket(CURL*, curl_socket_t, int what, void* self, void*);
    static int onTimer(CURLM*, long timeoutMs, void* self);
    int socketChanged(curl_socket_t fd, int what);
    void action(curl_socket_t fd, int flags);
    void finishDone();
    void scheduleDelivery();
    /** libcurl's callbacks catch what they throw (it must not unwind through curl's C frames);
     *  it is rethrown here, once curl has returned. */
    void rethrowFromCallback();
    std::exception_ptr m_callbackFailure;
    sd::Source m_delivery;

    sd::EventLoop& m_loop;
    HttpOptions m_options;
    CURLM* m_multi = nullptr;
    std::map<curl_socket_t, sd::Source> m_sockets;
    sd::Source m_timer;
    std::map<RequestId, std::unique_ptr<Request>> m_requests;
    RequestId m_next = 1;
    std::uint64_t m_count = 0;
};

}  // namespace prom::store

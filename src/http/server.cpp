#include "http/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace prom::http {
namespace {

// Bounds that keep a misbehaving scraper from costing the HA daemon anything: a few
// connections, little memory each, and idle ones closed.
constexpr unsigned kMaxConnections = 16;
constexpr unsigned kIdleTimeoutSeconds = 10;
constexpr std::size_t kConnectionMemory = 64 * 1024;

struct Reply {
    unsigned status;
    std::string body;
    std::string type = "text/plain; charset=utf-8";
};

std::string describe(const config::ListenAddress& a) {
    return (a.ipv6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

}  // namespace

Server::Server(sd::EventLoop& loop, Provider provider) : m_loop(loop), m_provider(std::move(provider)) {}

Server::~Server() {
    stop();
}

void Server::stop() {
    m_io.reset();
    m_timer.reset();
    if (m_daemon) MHD_stop_daemon(m_daemon);  // closes the listening socket and every connection
    m_daemon = nullptr;
}

Result<Ok> Server::start(const std::string& listen) {
    std::string why;
    auto address = config::parseListenAddress(listen, &why);
    if (!address) return Error{"cannot listen on \"" + listen + "\": " + why};
    return start(*address);
}

Result<Ok> Server::start(const config::ListenAddress& a) {
    stop();
    // The socket is made here rather than by MHD so that a failure says why (EADDRINUSE, ...).
    int fd = socket(a.ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return Error{"cannot listen on " + describe(a) + ": socket: " + std::strerror(errno)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (a.ipv6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a.port);
        inet_pton(AF_INET6, a.host.c_str(), &sin6->sin6_addr);
        len = sizeof *sin6;
    } else {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a.port);
        inet_pton(AF_INET, a.host.c_str(), &sin->sin_addr);
        len = sizeof *sin;
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 32) != 0) {
        int err = errno;
        close(fd);
        return Error{"cannot listen on " + describe(a) + ": " + std::strerror(err)};
    }
    sockaddr_storage bound{};
    socklen_t boundLen = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &boundLen);
    m_port = ntohs(a.ipv6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

    // No MHD_USE_INTERNAL_POLLING_THREAD: MHD_run() is called from the loop (external polling).
    m_daemon = MHD_start_daemon(MHD_USE_EPOLL | (a.ipv6 ? MHD_USE_IPv6 : 0), 0, nullptr, nullptr, &Server::onRequest,
                                this, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, kMaxConnections,
                                MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                kConnectionMemory, MHD_OPTION_END);
    if (!m_daemon) {
        close(fd);
        return Error{"cannot serve HTTP on " + describe(a) + ": libmicrohttpd did not start"};
    }
    const MHD_DaemonInfo* info = MHD_get_daemon_info(m_daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || info->epoll_fd < 0) {
        stop();
        return Error{"cannot serve HTTP on " + describe(a) + ": libmicrohttpd has no epoll fd"};
    }
    m_io = m_loop.addIo(info->epoll_fd, EPOLLIN, [this](std::uint32_t) { run(); });
    // One timer, re-armed after every MHD_run() to what MHD_get_timeout() asks for.
    m_timer = m_loop.addTimer(sd::EventLoop::now(), [this] { run(); });
    return Ok{};
}

void Server::run() {
    if (!m_daemon) return;
    MHD_run(m_daemon);
    // MHD_get_timeout: 0 when connections have buffered work that needs no new readiness
    // (edge-triggered epoll inside MHD); otherwise the nearest idle timeout.
    MHD_UNSIGNED_LONG_LONG timeout = 0;
    sd_event_source* timer = m_timer.get();
    if (!timer) return;
    if (MHD_get_timeout(m_daemon, &timeout) == MHD_YES) {
        std::uint64_t now = 0;
        sd_event_now(m_loop.get(), CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(timer, now + static_cast<std::uint64_t>(timeout) * 1000);
        sd_event_source_set_enabled(timer, SD_EVENT_ONESHOT);
    } else {
        sd_event_source_set_enabled(timer, SD_EVENT_OFF);
    }
}

MHD_Result Server::onRequest(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                             const char*, size_t* uploadDataSize, void**) {
    // A C library frame is above us: nothing may unwind through it (STYLE.md).
    try {
        // A request body is not read: every endpoint is a GET, and the reply below is queued
        // on the first call, before any body.
        (void)uploadDataSize;
        return static_cast<Server*>(cls)->respond(connection, url ? url : "", method ? method : "");
    } catch (const std::exception& e) {
        log::warning(std::string("http: request failed: ") + e.what());
    } catch (...) {
        log::warning("http: request failed");
    }
    return MHD_NO;  // MHD closes the connection
}

MHD_Result Server::respond(MHD_Connection* connection, const std::string& url, const std::string& method) {
    Reply reply{404, "not found: try /metrics, /health or /active\n"};
    bool known = url == "/metrics" || url == "/health" || url == "/active";
    if (known && method != "GET" && method != "HEAD") {
        reply = {405, "only GET and HEAD\n"};
    } else if (known) {
        Snapshot s = m_provider();
        if (url == "/metrics") {
            Format f = negotiate(MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
            reply = {200, renderMetrics(s, f), contentType(f)};
        } else if (url == "/health") {
            // Patroni's /health: the daemon runs; here also: its store answers.
            if (!s.running)
                reply = {503, "stopping\n"};
            else if (!s.storeHealthy)
                reply = {503, "store unreachable (role " + s.role + ")\n"};
            else
                reply = {200, "ok (role " + s.role + ")\n"};
        } else {
            // For load balancers (Patroni's /primary): 200 only on the active.
            reply = {s.running && s.role == "active" ? 200u : 503u, s.role + "\n"};
        }
    }
    MHD_Response* response =
        MHD_create_response_from_buffer(reply.body.size(), reply.body.data(), MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, reply.type.c_str());
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (reply.status == 405) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    MHD_Result r = MHD_queue_response(connection, reply.status, response);
    MHD_destroy_response(response);
    return r;
}

}  // namespace prom::http

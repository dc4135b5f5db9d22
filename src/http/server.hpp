#pragma once
// Health and metrics over HTTP (GET /metrics, /health, /active) with libmicrohttpd driven by the
// daemon's sd-event loop: MHD's epoll fd is an IO source and MHD_get_timeout() a timer, so
// requests are served on the one thread of prom, without threads of MHD's own.
#include <microhttpd.h>

#include <cstdint>
#include <functional>
#include <string>

#include "common/result.hpp"
#include "config/config.hpp"
#include "http/metrics.hpp"
#include "sd/event_loop.hpp"

namespace prom::http {

/** Serves /metrics, /health and /active from a snapshot taken on each request. */
class Server {
public:
    using Provider = std::function<Snapshot()>;

    Server(sd::EventLoop& loop, Provider provider);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /** Listens on "HOST:PORT" (prom.conf(5) [http] listen). An Error (address in use, no such
     *  address) is for the caller to log as a warning: prom runs on without the endpoints. */
    Result<Ok> start(const std::string& listen);
    /** Listens on a parsed address; port 0 picks a free port (tests). */
    Result<Ok> start(const config::ListenAddress& address);
    /** The port listened on (after start). */
    std::uint16_t port() const { return m_port; }
    /** Stops serving and closes every connection. */
    void stop();

private:
    static MHD_Result onRequest(void* cls, MHD_Connection* connection, const char* url, const char* method,
                                const char* version, const char* uploadData, size_t* uploadDataSize, void** state);
    MHD_Result respond(MHD_Connection* connection, const std::string& url, const std::string& method);
    void run();

    sd::EventLoop& m_loop;
    Provider m_provider;
    MHD_Daemon* m_daemon = nullptr;
    sd::Source m_io;
    sd::Source m_timer;
    std::uint16_t m_port = 0;
};

}  // namespace prom::http

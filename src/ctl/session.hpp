#pragma once
// promctl -c talks to the store as the replicas do (the same store::Etcd: endpoints tried in
// order, auth, TLS, reply limits), on its own sd-event loop turned one request at a time.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include "common/result.hpp"
#include "config/config.hpp"
#include "sd/event_loop.hpp"
#include "store/etcd.hpp"
#include "store/http.hpp"

namespace prom::ctl {

class EtcdSession {
public:
    /** timeout bounds each wait (at least one request timeout per endpoint). */
    EtcdSession(const config::Config& c, std::chrono::milliseconds timeout);
    ~EtcdSession();

    store::Etcd& etcd() { return *m_etcd; }

    /** Starts a request and turns the loop until it answers or the wait times out. */
    template <class T>
    Result<T> wait(const std::function<void(std::function<void(Result<T>)>)>& start) {
        // Shared: an answer after a timed-out wait must find its slot alive.
        auto slot = std::make_shared<std::optional<Result<T>>>();
        start([slot](Result<T> r) { slot->emplace(std::move(r)); });
        if (!m_loop.runUntil([&] { return slot->has_value(); }, sd::EventLoop::now() + m_wait))
            return Error{"the store did not answer within " + std::to_string(m_wait.count()) + " ms"};
        return std::move(**slot);
    }

    /** Turns the loop for a while (between polls of a wait for the cluster to change). */
    void pause(std::chrono::milliseconds d);

private:
    sd::EventLoop m_loop;
    store::Http m_http;
    std::unique_ptr<store::Etcd> m_etcd;
    std::chrono::milliseconds m_wait;
};

}  // namespace prom::ctl

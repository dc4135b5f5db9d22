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

/** An sd-event loop and an HTTP client of promctl's own, turned one request at a time. */
class Session {
public:
    explicit Session(const config::Config& c);
    virtual ~Session() = default;

    store::Http& http() { return m_http; }

    /** Calls start with a callback and turns the loop until it was called (its value) or the
     *  deadline passed (nullopt). */
    template <class T>
    std::optional<T> await(const std::function<void(std::function<void(T)>)>& start, TimePoint deadline) {
        // Shared: an answer after a given-up wait must find its slot alive.
        auto slot = std::make_shared<std::optional<T>>();
        start([slot](T r) { slot->emplace(std::move(r)); });
        if (!m_loop.runUntil([&] { return slot->has_value(); }, deadline)) return std::nullopt;
        return std::move(*slot);
    }

    /** Turns the loop for a while (between polls of a wait for the cluster to change). */
    void pause(std::chrono::milliseconds d);

protected:
    sd::EventLoop m_loop;
    store::Http m_http;
};

/** The replicas' etcd as they talk to it (store::Etcd). */
class EtcdSession : public Session {
public:
    /** timeout bounds each wait (at least one request timeout per endpoint). */
    EtcdSession(const config::Config& c, std::chrono::milliseconds timeout);
    ~EtcdSession() override;

    store::Etcd& etcd() { return *m_etcd; }

    /** Starts a request and turns the loop until it answers or the wait times out. */
    template <class T>
    Result<T> wait(const std::function<void(std::function<void(Result<T>)>)>& start) {
        auto r = await<Result<T>>(start, sd::EventLoop::now() + m_wait);
        if (!r) return Error{"the store did not answer within " + std::to_string(m_wait.count()) + " ms"};
        return std::move(*r);
    }

private:
    std::unique_ptr<store::Etcd> m_etcd;
    std::chrono::milliseconds m_wait;
};

}  // namespace prom::ctl

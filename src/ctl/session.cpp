#include "ctl/session.hpp"

#include "daemon/store_settings.hpp"

namespace prom::ctl {

Session::Session(const config::Config& c) : m_http(m_loop, daemon::httpOptions(c)) {}

void Session::pause(std::chrono::milliseconds d) {
    m_loop.runUntil([] { return false; }, sd::EventLoop::now() + d);
}

EtcdSession::EtcdSession(const config::Config& c, std::chrono::milliseconds timeout) : Session(c) {
    // "promctl" is never a replica id here: promctl writes no member or leader key.
    store::EtcdSettings es = daemon::etcdSettings(c, "promctl");
    es.requestTimeout = std::min(es.requestTimeout, timeout);
    m_wait = std::max(timeout, es.requestTimeout * static_cast<int>(es.endpoints.size() + 1));
    m_etcd = std::make_unique<store::Etcd>(m_loop, m_http, es);
}

EtcdSession::~EtcdSession() = default;

}  // namespace prom::ctl

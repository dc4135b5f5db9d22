#include "ctl/cluster_view.hpp"

#include <memory>

#include "common/text.hpp"
#include "ctl/session.hpp"

namespace prom::ctl {

Result<ClusterView> readCluster(const config::Config& c, std::chrono::milliseconds timeout) {
    if (c.store.backend != config::Backend::Etcd) return Error{"the cluster view reads etcd; this configuration uses MUSIC"};
    EtcdSession session(c, timeout);
    return readCluster(session, c);
}

Result<ClusterView> readCluster(EtcdSession& session, const config::Config& c) {
    ClusterView view;
    std::string endpoints;
    for (const auto& ep : c.store.endpoints) endpoints += (endpoints.empty() ? "" : ",") + text::redactUrl(ep);
    view.store = "etcd " + endpoints;
    view.hasControl = true;
    // The leader key and the control keys come in one read, at one revision (store::Etcd).
    auto control = std::make_shared<store::ControlState>();
    session.etcd().onControl([control](const store::ControlState& s) { *control = s; });
    auto leader = session.wait<core::LeaderRead>([&](auto done) { session.etcd().readLeader(std::move(done)); });
    if (!leader) return leader.error();
    view.control = *control;
    if (leader->key.exists) {
        view.leader = leader->key.holder;
        view.handoverTo = leader->key.handoverTo;
        view.token = leader->key.createRevision;
    }
    auto members = session.wait<std::vector<store::MemberInfo>>([&](auto done) { session.etcd().readMembers(std::move(done)); });
    if (!members) return members.error();
    for (auto& m : *members) view.up[m.id] = std::move(m);
    return view;
}

}  // namespace prom::ctl

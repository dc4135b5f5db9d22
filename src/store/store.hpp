#pragma once
// What the election needs from a coordination store (DESIGN.md §2). Every call is
// asynchronous: the callback runs later on the event loop, once, with a definitive answer or
// an Error (an ambiguous write is re-read by the store before it answers).
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "core/election.hpp"
#include "store/control.hpp"

namespace prom::store {

struct Lease {
    std::int64_t id;
    core::Duration ttl;
};

class Store {
public:
    virtual ~Store() = default;
    /** Grants a lease of at least ttl (the store may grant more). */
    virtual void grantLease(core::Duration ttl, std::function<void(Result<Lease>)> done) = 0;
    /** Renews; nullopt = the lease no longer exists. */
    virtual void keepAlive(std::int64_t lease, std::function<void(Result<std::optional<core::Duration>>)> done) = 0;
    virtual void revokeLease(std::int64_t lease, std::function<void(Result<Ok>)> done) = 0;
    virtual void readLeader(std::function<void(Result<core::LeaderRead>)> done) = 0;
    /** Creates the leader key bound to lease if absent; reports the holder either way. fast:
     *  the key is marked fast (fast mode: mode=fast in its value); a backend without fast keys
     *  creates a slow one, and the result says so (key.fast == false). */
    virtual void campaign(std::int64_t lease, bool fast, std::function<void(Result<core::CampaignResult>)> done) = 0;
    /** Deletes the leader key if its create revision still equals createRevision. */
    virtual void deleteLeader(std::int64_t createRevision, std::function<void(Result<Ok>)> done) = 0;
    /** Watches the leader key from a revision; exactly one of the callbacks ends it: broken. */
    virtual void watchLeader(std::int64_t fromRevision, std::function<void(const core::WatchEvent&)> onEvent,
                             std::function<void(const std::string& why)> onBroken) = 0;
    virtual void cancelWatch() = 0;
    /** Rewrites the leader key (if its create revision is still createRevision) to name the
     *  replica that should take over, keeping it on lease. */
    virtual void markHandover(std::int64_t createRevision, std::int64_t lease, const std::string& target,
                              std::function<void(Result<Ok>)> done) = 0;
    /** Puts this replica's member record, bound to lease (it vanishes with the lease). */
    virtual void putMember(std::int64_t lease, const MemberInfo& info, std::function<void(Result<Ok>)> done) = 0;
    /** The replicas whose member key exists, with what they say of themselves. */
    virtual void readMembers(std::function<void(Result<std::vector<MemberInfo>>)> done) = 0;

    // ---- control keys (store/control.hpp): etcd only --------------------------------------
    /** Whether this backend keeps control keys (cluster pause, requests from promctl -c). */
    virtual bool hasControl() const { return false; }
    /** Called with the whole control state after every leader read (one snapshot with the
     *  leader key, at the same revision) and every watch event of a control key. */
    virtual void onControl(std::function<void(const ControlState&)> listener) { (void)listener; }
    /** Sets (or with paused false, removes) the cluster-wide pause. */
    virtual void putPause(const ClusterPause& pause, std::function<void(Result<Ok>)> done) {
        (void)pause;
        done(Error{"this store keeps no control keys"});
    }
    /** Writes a request on the requester's lease (promctl). */
    virtual void putRequest(const ControlRequest& request, std::int64_t lease, std::function<void(Result<Ok>)> done) {
        (void)request, (void)lease;
        done(Error{"this store keeps no control keys"});
    }
    /** Answers a request: the reply on the request's lease, the request deleted (if its key
     *  is still at revision), in one transaction. */
    virtual void answerRequest(const ControlRequest& request, const ControlReply& reply,
                               std::function<void(Result<Ok>)> done) {
        (void)request, (void)reply;
        done(Error{"this store keeps no control keys"});
    }

    /** Requests sent so far (benchmarks). */
    virtual std::uint64_t requestCount() const = 0;
};

}  // namespace prom::store

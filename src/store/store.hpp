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
    /** Creates the leader key bound to lease if absent; reports the holder either way. */
    virtual void campaign(std::int64_t lease, std::function<void(Result<core::CampaignResult>)> done) = 0;
    /** Fast mode: as campaign, with the key marked fast (mode=fast in its value). A backend
     *  without fast keys creates a slow one, and the result says so (key.fast == false). */
    virtual void campaignFast(std::int64_t lease, std::function<void(Result<core::CampaignResult>)> done) {
        campaign(lease, std::move(done));
    }
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
    /** Puts this replica's member key, bound to lease (it vanishes with the lease). */
    virtual void putMember(std::int64_t lease, std::function<void(Result<Ok>)> done) = 0;
    /** Ids of the replicas whose member key exists. */
    virtual void readMembers(std::function<void(Result<std::vector<std::string>>)> done) = 0;
    /** Requests sent so far (benchmarks). */
    virtual std::uint64_t requestCount() const = 0;
};

}  // namespace prom::store

#pragma once
// Carries the core's store effects to a store::Store and brings every answer back as the reply
// event that names the request (core::RequestId), so the core can drop answers to requests it
// no longer waits for. It also keeps what operators see of the store: healthy or not, and why.
#include <functional>
#include <optional>
#include <string>

#include "common/clock.hpp"
#include "core/election.hpp"
#include "store/store.hpp"

namespace prom::daemon {

class StoreDriver {
public:
    using Feed = std::function<void(core::Event)>;
    using Now = std::function<TimePoint()>;
    /** Called when the store's health or its last error changes. */
    using HealthChanged = std::function<void(bool healthy, const std::string& error)>;

    /** backend names the store in messages ("etcd", "MUSIC"). */
    StoreDriver(store::Store& store, std::string backend, Feed feed, Now now, HealthChanged healthChanged);

    /** Starts the store request of a store effect; false when the effect is not one. */
    bool apply(const core::Effect& effect);

    /** What this replica's member key says (host, pid, role, token, ...): written when the
     *  core puts the member key, and again on memberChanged(). */
    void describeMember(std::function<store::MemberInfo()> describe) { m_describe = std::move(describe); }
    /** Rewrites the member key if what describeMember gives changed since the last write
     *  (the daemon calls it after every batch of events; a failed write is retried then). */
    void memberChanged();

    /** Called with the round trip of every lease and leader-key request (metrics). */
    void observeLatency(std::function<void(Duration)> observer) { m_latency = std::move(observer); }

    bool healthy() const { return m_healthy; }
    const std::string& lastError() const { return m_lastError; }
    /** When the store last answered anything (success or error); epoch if never. */
    TimePoint lastReply() const { return m_lastReply; }

private:
    /** The one path of every answer: record health, log a failure, feed the event. */
    template <class T>
    std::function<void(Result<T>)> answer(std::string what, bool countsForHealth,
                                          std::function<core::Event(const Error&)> onError,
                                          std::function<core::Event(T&)> onValue);
    void record(bool ok, const std::string& error);
    /** Logs a failure: the first of an outage at once, then a count every kLogEvery. */
    void logFailure(const std::string& message);
    void putMember();

    /** During an outage identical failures are summarised this often (not ~4 lines a second). */
    static constexpr Duration kLogEvery{10000};

    store::Store& m_store;
    std::string m_backend;
    Feed m_feed;
    Now m_now;
    HealthChanged m_healthChanged;
    std::function<void(Duration)> m_latency;
    bool m_healthy = false;
    std::string m_lastError;
    TimePoint m_lastReply{};
    std::uint64_t m_suppressed = 0;  ///< failures not logged since m_lastLogged
    std::uint64_t m_outageFailures = 0;
    TimePoint m_lastLogged{};
    TimePoint m_outageSince{};
    std::function<store::MemberInfo()> m_describe;
    std::int64_t m_memberLease = 0;           ///< the lease of the last PutMember
    std::optional<store::MemberInfo> m_putMember;  ///< what the member key holds
    bool m_memberPutting = false;
    bool m_memberDirty = false;
    TimePoint m_memberRetryAt{};
    static constexpr Duration kMemberRetry{1000};
};

}  // namespace prom::daemon

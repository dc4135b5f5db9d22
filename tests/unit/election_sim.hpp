#pragma once
// A core driven as the daemon drives it, under a fake clock: replies answer the latest request
// of their kind, timers fire as the daemon's would. Shared by the core's unit tests.
#include <optional>
#include <vector>

#include "core/election.hpp"

namespace election_test {

using namespace prom::core;
using namespace std::chrono_literals;


inline constexpr std::int64_t kLease = 100;

class Sim {
public:
    explicit Sim(Params p = defaults()) : m_e(p), m_p(p) {}

    static Params defaults() {
        Params p;
        p.self = "0";
        p.requestedTtl = 5000ms;
        p.demoteMargin = 1250ms;
        p.monitorInterval = 1000ms;
        p.retryBackoff = 200ms;
        p.retryAttempts = 3;
        p.resignCooldown = 5000ms;
        p.storeRetry = 500ms;
        return p;
    }

    /** Feeds e; a reply without a request id answers the latest request of its kind (as the
     *  daemon's drivers do), so that tests only name ids when they test stale replies. */
    const std::vector<Effect>& feed(const Event& event) {
        Event e = event;
        std::visit([this](auto& ev) { fillRequest(ev); }, e);
        m_last = m_e.handle(now, e);
        m_all.insert(m_all.end(), m_last.begin(), m_last.end());
        return m_last;
    }
    /** Delivers every Tick the daemon's timer would, up to t. */
    void runUntil(TimePoint t) {
        std::vector<Effect> during;
        while (auto w = m_e.nextWakeup()) {
            if (*w > t) break;
            now = *w;
            feed(Tick{});
            during.insert(during.end(), m_last.begin(), m_last.end());
        }
        now = t;
        feed(Tick{});
        during.insert(during.end(), m_last.begin(), m_last.end());
        m_last = std::move(during);  // last<T>() sees everything of this run
    }
    void runFor(Duration d) { runUntil(now + d); }

    template <class T>
    const T* last() const {
        for (auto it = m_last.rbegin(); it != m_last.rend(); ++it)
            if (auto* p = std::get_if<T>(&*it)) return p;
        return nullptr;
    }
    template <class T>
    int countSinceMark() const {
        int n = 0;
        for (std::size_t i = m_mark; i < m_all.size(); ++i) n += std::holds_alternative<T>(m_all[i]);
        return n;
    }
    template <class T>
    const T* findSinceMark() const {
        for (std::size_t i = m_mark; i < m_all.size(); ++i)
            if (auto* p = std::get_if<T>(&m_all[i])) return p;
        return nullptr;
    }
    void mark() { m_mark = m_all.size(); }
    /** Every effect since construction. */
    const std::vector<Effect>& all() const { return m_all; }
    bool ranSinceMark(ActionKind k) const {
        for (std::size_t i = m_mark; i < m_all.size(); ++i)
            if (auto* r = std::get_if<RunAction>(&m_all[i]); r && r->kind == k) return true;
        return false;
    }

    /** Start, lease, leader read (absent or held by other), initial ensure-passive. */
    void toPassive(LeaderKey leader = {}, std::int64_t revision = 1) {
        if (!lastId<GrantLease>()) feed(Start{});
        // A fresh start has nothing to resume: ensure-passive at once, before the store answers.
        EXPECT_NE(lastId<RunAction>(), 0u);
        feed(LeaseGranted{kLease, 5000ms, now});
        feed(LeaderRead{leader, revision});
        feed(ActionFinished{ActionKind::EnsurePassive, ActionOutcome::AlreadyInMode, ""});
        EXPECT_EQ(m_e.role(), Role::Passive);
    }
    void toActive(std::int64_t token = 5) {
        toPassive();
        EXPECT_NE(last<Campaign>(), nullptr);
        feed(CampaignResult{true, {true, m_p.self, kLease, token, {}}, token});
        EXPECT_EQ(m_e.role(), Role::Promoting);
        EXPECT_EQ(last<RunAction>()->kind, ActionKind::EnsureActive);
        feed(ActionFinished{ActionKind::EnsureActive, ActionOutcome::Switched, ""});
        EXPECT_EQ(m_e.role(), Role::Active);
    }
    /** Actions finish promptly; the store never answers a keepalive. */
    void storeSilent(Duration d) { ackKeepalives(d, false); }
    /** Keeps the lease alive with prompt acks (the store answering within 2 ms); actions
     *  finish after 5 ms with exit 0. */
    void ackKeepalives(Duration d, bool ack = true) {
        TimePoint end = now + d;
        for (;;) {
            auto w = m_e.nextWakeup();
            bool last = !w || *w > end;
            now = last ? end : *w;
            feed(Tick{});
            respond(ack, ActionOutcome::AlreadyInMode);
            if (last) return;
        }
    }
    /** Runs (acking keepalives) until an action starts; returns it without finishing it. */
    RunAction nextAction(Duration limit = 10s) {
        TimePoint end = now + limit;
        while (auto w = m_e.nextWakeup()) {
            if (*w > end) break;
            now = *w;
            feed(Tick{});
            respond(true, std::nullopt);
            if (auto* r = last<RunAction>()) return *r;
        }
        ADD_FAILURE() << "no action started";
        return {};
    }

    Election& e() { return m_e; }
    const std::vector<Effect>& lastEffects() const { return m_last; }
    TimePoint now{Duration(1'000'000)};

    template <class T>
    RequestId lastId() const {
        for (auto it = m_all.rbegin(); it != m_all.rend(); ++it)
            if (auto* p = std::get_if<T>(&*it)) return p->id;
        return 0;
    }

private:
    template <class E>
    void fillRequest(E& e) {
        if constexpr (requires { e.req; }) {
            if (e.req) return;
            using SRF = StoreRequestFailed;
            if constexpr (std::is_same_v<E, LeaseGranted>) e.req = lastId<GrantLease>();
            else if constexpr (std::is_same_v<E, LeaseRequestFailed>) e.req = e.lease ? lastId<KeepAlive>() : lastId<GrantLease>();
            else if constexpr (std::is_same_v<E, KeepaliveAcked> || std::is_same_v<E, LeaseLost>) e.req = lastId<KeepAlive>();
            else if constexpr (std::is_same_v<E, LeaderRead>) e.req = lastId<ReadLeader>();
            else if constexpr (std::is_same_v<E, CampaignResult>) e.req = lastId<Campaign>();
            else if constexpr (std::is_same_v<E, WatchEvent> || std::is_same_v<E, WatchBroken>) e.req = lastId<Watch>();
            else if constexpr (std::is_same_v<E, ActionFinished>) e.req = lastId<RunAction>();
            else if constexpr (std::is_same_v<E, ResignDone>) e.req = lastId<DeleteLeader>();
            else if constexpr (std::is_same_v<E, MembersRead>) e.req = lastId<ReadMembers>();
            else if constexpr (std::is_same_v<E, HandoverMarked>) e.req = lastId<MarkHandover>();
            else if constexpr (std::is_same_v<E, SRF>) {
                switch (e.what) {
                    case SRF::What::Read: e.req = lastId<ReadLeader>(); break;
                    case SRF::What::Campaign: e.req = lastId<Campaign>(); break;
                    case SRF::What::Resign: e.req = lastId<DeleteLeader>(); break;
                    case SRF::What::Members: e.req = lastId<ReadMembers>(); break;
                    case SRF::What::Handover: e.req = lastId<MarkHandover>(); break;
                }
            }
        }
    }

    void respond(bool ack, std::optional<ActionOutcome> outcome) {
        for (int round = 0; round < 4; ++round) {
            const KeepAlive* k = ack ? last<KeepAlive>() : nullptr;
            const RunAction* r = outcome ? last<RunAction>() : nullptr;
            if (!k && !r) return;
            if (k) {
                std::int64_t lease = k->lease;
                TimePoint sent = now;
                now += 2ms;
                feed(KeepaliveAcked{lease, 5000ms, sent});
            } else {
                ActionKind kind = r->kind;
                now += 5ms;
                feed(ActionFinished{kind, *outcome, ""});
            }
        }
    }

    Election m_e;
    Params m_p;
    std::vector<Effect> m_last;
    std::vector<Effect> m_all;
    std::size_t m_mark = 0;
};

inline LeaderKey other(std::int64_t rev, const std::string& who = "1") { return {true, who, 999, rev, {}}; }

}  // namespace election_test

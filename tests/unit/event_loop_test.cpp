// Issue 9 item 11: an exception must not unwind through sd-event's or libcurl's C frames. The
// trampolines catch it, end the loop, and run() rethrows it to main.
#include "sd/event_loop.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

#include "store/http.hpp"

using namespace prom;
using namespace std::chrono_literals;

TEST(EventLoop, AnExceptionInATimerEndsTheLoopAndIsRethrownByRun) {
    sd::EventLoop loop;
    bool later = false;
    auto a = loop.addTimer(sd::EventLoop::now(), [] { throw std::runtime_error("bug in a timer"); });
    auto b = loop.addTimer(sd::EventLoop::now() + 200ms, [&] { later = true; });
    EXPECT_THROW(
        {
            try {
                loop.run();
            } catch (const std::runtime_error& e) {
                EXPECT_STREQ(e.what(), "bug in a timer");
                throw;
            }
        },
        std::runtime_error);
    EXPECT_FALSE(later);
    // sd-event finished its turn: unwinding through sd_event_dispatch() instead would leave
    // it RUNNING for good (and the loop referenced, so leaked).
    EXPECT_EQ(sd_event_get_state(loop.get()), SD_EVENT_FINISHED);
}

TEST(EventLoop, AnExceptionInAnIoCallbackIsRethrownByRun) {
    sd::EventLoop loop;
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    ASSERT_EQ(write(fds[1], "x", 1), 1);
    auto io = loop.addIo(fds[0], EPOLLIN, [](std::uint32_t) { throw std::logic_error("bug in an io callback"); });
    EXPECT_THROW(loop.run(), std::logic_error);
    EXPECT_EQ(sd_event_get_state(loop.get()), SD_EVENT_FINISHED);
    close(fds[0]);
    close(fds[1]);
}

// CLOCK_BOOTTIME counts suspend; the timers run on the same clock as now().
TEST(EventLoop, NowIsBoottimeAndTimersUseIt) {
    timespec ts{};
    clock_gettime(CLOCK_BOOTTIME, &ts);
    auto boot = prom::Duration(ts.tv_sec * 1000LL + ts.tv_nsec / 1000000);
    EXPECT_LE(std::chrono::abs(sd::EventLoop::now().time_since_epoch() - boot), 50ms);
    sd::EventLoop loop;
    auto start = sd::EventLoop::now();
    auto t = loop.addTimer(start + 100ms, [&] { loop.exit(0); });
    EXPECT_EQ(loop.run(), 0);
    EXPECT_GE(sd::EventLoop::now() - start, 100ms);
    EXPECT_LT(sd::EventLoop::now() - start, 1000ms);
}

TEST(Http, AnExceptionInADoneCallbackDoesNotCrossLibcurlAndIsRethrownByRun) {
    // A port nothing listens on: curl fails at once and calls done from the loop.
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(getsockname(s, reinterpret_cast<sockaddr*>(&a), &len), 0);
    close(s);
    sd::EventLoop loop;
    store::Http http(loop, store::HttpOptions{});
    http.post("http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/v3/kv/range", "{}", {}, 1000ms,
              [](store::HttpResponse) { throw std::runtime_error("bug in a reply handler"); });
    EXPECT_THROW(loop.run(), std::runtime_error);
    EXPECT_EQ(sd_event_get_state(loop.get()), SD_EVENT_FINISHED);
}

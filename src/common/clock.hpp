#pragma once
// The one clock type of prom: milliseconds on the daemon's monotonic clock (sd::EventLoop::now,
// CLOCK_BOOTTIME so that time spent suspended counts towards every deadline). A small header of
// its own so that sd/, store/ and actions/ can use it without including the election.
#include <chrono>

namespace prom {

using Duration = std::chrono::milliseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

}  // namespace prom

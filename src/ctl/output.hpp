#pragma once
// How promctl prints what came from daemons and the store: escaped (a crafted key cannot drive
// the terminal), fitted to the terminal, with times as people read them.
#include <cstddef>
#include <cstdint>
#include <string>

namespace prom::ctl {

// promctl(1) exit status.
inline constexpr int kExitFailed = 1;
inline constexpr int kExitInvalid = 2;
inline constexpr int kExitNoActive = 3;
inline constexpr int kExitStoreUnavailable = 4;
inline constexpr int kExitAccessDenied = 5;
inline constexpr int kExitSeveralActives = 6;

/** Control characters, C1 controls, invalid UTF-8 and backslashes escaped (\xNN, \\). */
std::string clean(const std::string& s);
/** The last column of a table cut to the terminal's width (whole text when piped). */
std::string fitLastColumn(const std::string& text, std::size_t used);
/** A CLOCK_REALTIME time in µs as local "YYYY-mm-dd HH:MM:SS" ("-" for 0). */
std::string since(std::uint64_t usec);
/** A duration as people read it: 42s, 3m12s, 5h7m, 2d3h. */
std::string compactAge(std::uint64_t seconds);
/** "[12s ago] text" from the error's CLOCK_REALTIME time in µs (text alone without one; a
 *  time ahead of this clock counts as 0s). */
std::string withAge(const std::string& text, std::uint64_t usec);
/** CLOCK_REALTIME now, µs. */
std::uint64_t realtimeUsec();

}  // namespace prom::ctl

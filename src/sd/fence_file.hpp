#pragma once
// The fence file (prom(8), FENCE): what systemd must run, and by when, to put this replica's
// service passive when prom cannot. prom writes it while its replica may be active; the
// prom-fence program reads it. It carries the RESOLVED ensure-passive action and its
// environment so that the fence never needs prom's configuration (which may be the reason
// prom cannot start). This file depends on nothing but the C++ library: prom-fence links it.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace prom::sd {

/** One resolved ensure-passive action. */
struct FenceAction {
    enum class Kind { Shell, Exec, StartUnit, StopUnit };
    Kind kind = Kind::Shell;
    /** Shell: {command}; Exec: argv; StartUnit/StopUnit: {unit}. */
    std::vector<std::string> args;
    bool operator==(const FenceAction&) const = default;
};

/** Contents of a fence file. */
struct FenceRecord {
    std::string replica;
    std::string app;
    /** CLOCK_BOOTTIME, absolute µs: the service must be passive by then (prom's own deadline). */
    std::uint64_t deadlineBoottimeUsec = 0;
    std::int64_t token = 0;
    FenceAction action;
    std::map<std::string, std::string> env;
    std::uint64_t timeoutMs = 30000;  ///< one run of the action
    /** $INVOCATION_ID of the prom that wrote it ("" outside systemd): a clean exit of that very
     *  run means it demoted itself; a clean exit of a later run that never settled does not. */
    std::string invocation;
    bool operator==(const FenceRecord&) const = default;
};

/** Serialises a record: "key value" lines, values escaped (\\, \n, \r, \t). */
std::string formatFence(const FenceRecord& r);
/** Parses formatFence output; nullopt (and why in *error) on anything malformed. */
std::optional<FenceRecord> parseFence(const std::string& text, std::string* error = nullptr);

/** Writes path atomically (temporary file, fsync, rename); false and why in *error on failure. */
bool writeFenceFile(const std::string& path, const FenceRecord& r, std::string* error = nullptr);
/** Reads and parses path; nullopt when absent or malformed (why in *error, "" when absent). */
std::optional<FenceRecord> readFenceFile(const std::string& path, std::string* error = nullptr);

/** CLOCK_BOOTTIME now, in µs. */
std::uint64_t boottimeUsec();
/** CLOCK_MONOTONIC now, in µs. */
std::uint64_t monotonicUsec();

/** Where prom-fence keeps armed copies (outside RuntimeDirectory=, which goes when prom stops). */
inline constexpr const char* kArmedDirectory = "/run/prom-fence";

}  // namespace prom::sd

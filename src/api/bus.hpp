#pragma once
// Names of the org.prom.Prom1 API (org.prom.Prom1(5)): bus names, object path, errors.
#include <string>

namespace prom::api {

/** Bus name of a replica: org.prom.Prom1.Replica_ID with characters outside [A-Za-z0-9_] as _. */
std::string busNameFor(const std::string& replicaId);

inline constexpr const char* kObjectPath = "/org/prom/Prom1";
inline constexpr const char* kErrorNotActive = "org.prom.Prom1.Error.NotActive";
inline constexpr const char* kErrorStoreUnavailable = "org.prom.Prom1.Error.StoreUnavailable";
inline constexpr const char* kErrorInvalidArgs = "org.prom.Prom1.Error.InvalidArgs";
/** The cluster is paused (control/pause in the store): no switchover or resign, which would
 *  leave the cluster without an active since nobody takes over while paused. */
inline constexpr const char* kErrorPaused = "org.prom.Prom1.Error.Paused";

}  // namespace prom::api

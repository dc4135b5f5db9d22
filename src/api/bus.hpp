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

}  // namespace prom::api

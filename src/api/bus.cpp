#include "api/bus.hpp"

#include <cctype>

namespace prom::api {

std::string busNameFor(const std::string& replicaId) {
    std::string s = "org.prom.Prom1.Replica_";
    for (unsigned char c : replicaId) s += (std::isalnum(c) || c == '_') ? static_cast<char>(c) : '_';
    return s;
}

}  // namespace prom::api

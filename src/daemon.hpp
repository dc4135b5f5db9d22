#pragma once
// Wires config, election core, store, actions and systemd notification on one sd-event loop.
#include <string>

#include "config/config.hpp"

namespace prom {

struct DaemonOptions {
    std::string id;
    std::string configPath;
    bool startPassive = false;
    std::string bus = "system";  ///< system, session or none
};

/** Runs the daemon until it is stopped; returns the process exit code. */
int runDaemon(const DaemonOptions& options, config::Config config);

}  // namespace prom

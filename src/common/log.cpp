#include "common/log.hpp"

#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

namespace prom::log {
namespace {
std::map<std::string, std::string>& context() {
    static std::map<std::string, std::string> c;
    return c;
}
bool g_debug = std::getenv("PROM_DEBUG") != nullptr;

// systemd.exec(5): JOURNAL_STREAM=DEV:INODE identifies stderr when it is connected to journald.
bool stderrIsJournal() {
    static int cached = -1;
    if (cached >= 0) return cached;
    cached = 0;
    const char* js = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    unsigned long dev = 0, ino = 0;
    if (js && std::sscanf(js, "%lu:%lu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
        cached = (st.st_dev == dev && st.st_ino == ino) ? 1 : 0;
    return cached;
}

const char* levelName(Level l) {
    switch (l) {
        case Level::Error: return "error";
        case Level::Warning: return "warning";
        case Level::Notice: return "notice";
        case Level::Info: return "info";
        case Level::Debug: return "debug";
    }
    return "?";
}
}  // namespace

void setContext(const std::string& key, const std::string& value) { context()[key] = value; }
void setDebug(bool on) { g_debug = on; }
void debug(const std::string& m) {
    if (g_debug) write(Level::Debug, m);
}

void write(Level level, const std::string& message, const std::map<std::string, std::string>& fields) {
    if (stderrIsJournal()) {
        std::vector<std::string> strs;
        strs.push_back("MESSAGE=" + message);
        strs.push_back("PRIORITY=" + std::to_string(static_cast<int>(level)));
        strs.push_back("SYSLOG_IDENTIFIER=prom");
        std::map<std::string, std::string> all = context();
        for (const auto& [k, v] : fields) all[k] = v;
        for (const auto& [k, v] : all) strs.push_back(k + "=" + v);
        std::vector<iovec> iov;
        for (auto& s : strs) iov.push_back(iovec{s.data(), s.size()});
        if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
    }
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm {};
    localtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    std::string replica = context().count("PROM_REPLICA") ? " [" + context()["PROM_REPLICA"] + "]" : "";
    std::fprintf(stderr, "%s.%03ld prom%s %s: %s\n", stamp, ts.tv_nsec / 1000000, replica.c_str(), levelName(level),
                 message.c_str());
}

}  // namespace prom::log


#pragma once
// Structured logging: journald records with PROM_* fields when stderr is the journal
// (JOURNAL_STREAM, see systemd.exec(5)), plain stderr lines otherwise.
#include <map>
#include <string>

namespace prom::log {

enum class Level { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

/** MESSAGE_ID of role-change records (journalctl MESSAGE_ID=...). */
inline constexpr const char* kRoleChangedMessageId = "6d1c5f0b8e9a4c2fa1b7e3d9c4f20a57";

/** Fields attached to every record of this process (PROM_APP, PROM_REPLICA, ...). */
void setContext(const std::string& key, const std::string& value);

/** Writes one record; extra fields (KEY=value) go to the journal only. */
void write(Level level, const std::string& message, const std::map<std::string, std::string>& fields = {});

inline void error(const std::string& m) { write(Level::Error, m); }
inline void warning(const std::string& m) { write(Level::Warning, m); }
inline void notice(const std::string& m) { write(Level::Notice, m); }
inline void info(const std::string& m) { write(Level::Info, m); }
void debug(const std::string& m);

/** Enables debug records (PROM_DEBUG=1 in the environment). */
void setDebug(bool on);

}  // namespace prom::log

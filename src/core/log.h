// Process-wide logging to standard error, one line per message, in one of two
// formats chosen at start (SetLogFormat):
//   text (default): "2026-11-26T10:00:00.000Z info message key=value ..."
//   json: {"time":"2026-11-26T10:00:00.000Z","level":"info","message":"...","key":"value",...}
// Thread-safe (lines never interleave). Never log client addresses or tokens.
// Warnings (what clients cause) are capped at 100 lines per second; the excess
// is counted in one summary line.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

namespace nucleon {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kText, kJson };

// One named value attached to a log line: a separate member of the JSON object,
// `key=value` after the message in text (quoted when it holds a space). A
// field with an empty value is left out.
struct LogField {
  std::string_view key;
  std::string value;
};

void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});

inline void LogInfo(std::string_view m, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, m, fields);
}
inline void LogWarn(std::string_view m, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarn, m, fields);
}
inline void LogError(std::string_view m, std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, m, fields);
}

}  // namespace nucleon

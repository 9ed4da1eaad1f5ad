// Process-wide logging to standard error, one line per message:
// "2026-11-26T10:00:00.000Z info message". Thread-safe (lines never interleave).
// Never log client addresses or tokens. Warnings (what clients cause) are
// capped at 100 lines per second; the excess is counted in one summary line.
#pragma once

#include <string_view>

namespace nucleon {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

void SetLogLevel(LogLevel level);
void Log(LogLevel level, std::string_view message);

inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarn(std::string_view m) { Log(LogLevel::kWarn, m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, m); }

}  // namespace nucleon

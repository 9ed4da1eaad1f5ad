#include "core/log.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

#include "core/http_types.h"
#include "core/time_util.h"

namespace nucleon {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
std::mutex g_mu;
// Warnings are what clients cause (bad input, refused messages): a client must
// not be able to fill the disk through the log. Per second at most this many
// are written; the rest are counted and reported in one line.
constexpr int kMaxWarningsPerSecond = 100;
int64_t g_warn_second = 0;   // guarded by g_mu
int g_warn_count = 0;        // warnings written in g_warn_second
int64_t g_warn_dropped = 0;  // warnings dropped since the last report

void WriteLine(int64_t now_ms, std::string_view level, std::string_view message,
               std::initializer_list<LogField> fields = {}) {
  std::string line;
  if (static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)) == LogFormat::kJson) {
    line = "{\"time\":\"" + FormatIsoMs(now_ms) + "\",\"level\":\"";
    line.append(level);
    line += "\",\"message\":" + JsonQuote(message);
    for (const LogField& f : fields) {
      if (f.value.empty()) continue;
      line += ',' + JsonQuote(f.key) + ':' + JsonQuote(f.value);
    }
    line += '}';
  } else {
    line = FormatIsoMs(now_ms);
    line += ' ';
    line.append(level);
    line += ' ';
    line.append(message);
    for (const LogField& f : fields) {
      if (f.value.empty()) continue;
      line += ' ';
      line.append(f.key);
      line += '=';
      // Quoted where a space or a quote would make the line ambiguous.
      const bool plain = f.value.find_first_of(" \"\\\n") == std::string::npos;
      line += plain ? f.value : JsonQuote(f.value);
    }
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogFormat(LogFormat format) { g_format = static_cast<int>(format); }

void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  static const char* kNames[] = {"debug", "info", "warn", "error"};
  const int64_t now = NowMs();
  std::lock_guard<std::mutex> lock(g_mu);
  if (level == LogLevel::kWarn) {
    const int64_t second = now / 1000;
    if (second != g_warn_second) {
      if (g_warn_dropped > 0) {
        WriteLine(now, "warn", std::to_string(g_warn_dropped) +
                                   " more warnings were not logged (at most " +
                                   std::to_string(kMaxWarningsPerSecond) + " per second)");
      }
      g_warn_second = second;
      g_warn_count = g_warn_dropped > 0 ? 1 : 0;
      g_warn_dropped = 0;
    }
    if (g_warn_count >= kMaxWarningsPerSecond) {
      ++g_warn_dropped;
      return;
    }
    ++g_warn_count;
  }
  WriteLine(now, kNames[static_cast<int>(level)], message, fields);
}

}  // namespace nucleon

#include "core/normalize.h"

#include <charconv>
#include <cmath>

namespace nucleon {

namespace {
std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}
}  // namespace

std::string NormalizePlatform(std::string_view platform) {
  std::string p = Lower(platform);
  if (p == "darwin" || p == "mac" || p == "macos") return "mac";
  if (p == "windows_nt" || p == "win32" || p == "windows") return "win";
  if (p == "linux") return "linux";
  return p;
}

std::string LanguageOf(std::string_view locale) {
  size_t end = 0;
  while (end < locale.size() && ((locale[end] >= 'a' && locale[end] <= 'z') ||
                                 (locale[end] >= 'A' && locale[end] <= 'Z'))) {
    ++end;
  }
  // A primary language subtag has 2-3 letters (ISO 639) or up to 8 when registered.
  if (end < 2 || end > 8) return "";
  if (end < locale.size() && locale[end] != '-' && locale[end] != '_' && locale[end] != '.' &&
      locale[end] != '@') {
    return "";
  }
  std::string lang = Lower(locale.substr(0, end));
  if (lang == "posix") return "";
  return lang;
}

std::string RamBucket(double total_ram_gb) {
  if (!std::isfinite(total_ram_gb) || total_ram_gb < 0) return "";
  return RenderNumber(std::floor(total_ram_gb + 0.5));
}

std::string RenderNumber(double value) {
  if (!std::isfinite(value)) return "null";
  if (value == 0) return "0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, res.ptr);
}

}  // namespace nucleon

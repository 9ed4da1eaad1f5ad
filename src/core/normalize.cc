#include "core/normalize.h"

#include <charconv>
#include <cmath>

namespace nucleon {

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string NormalizePlatform(std::string_view platform) {
  std::string p = AsciiLower(platform);
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
  std::string lang = AsciiLower(locale.substr(0, end));
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
  // JavaScript's Number.prototype.toString: the shortest digits that round-trip
  // (k digits, value = 0.d1..dk * 10^n), shown plainly for 1e-7 < |v| < 1e21,
  // else in exponent form ("1e-7", "1.5e+21").
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  std::string out;
  if (sci.front() == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int exp10 = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exp10);
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<size_t>(n));
    out.push_back('.');
    out += digits.substr(static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-n), '0');
    out += digits;
  } else {
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out += digits.substr(1);
    }
    out.push_back('e');
    out.push_back(n - 1 >= 0 ? '+' : '-');
    out += std::to_string(n - 1 >= 0 ? n - 1 : 1 - n);
  }
  return out;
}

}  // namespace nucleon

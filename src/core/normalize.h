// Value normalisation as defined in semantics.md: platform, language, RAM.
// Applied wherever a value is shown or aggregated. Pure; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nucleon {

// `s` with the ASCII letters A-Z lowercased (other bytes as they are).
std::string AsciiLower(std::string_view s);

// Darwin/darwin/mac/macos/macOS -> mac; Windows_NT/win32/windows -> win;
// Linux/linux -> linux; anything else lowercased. Empty stays empty.
std::string NormalizePlatform(std::string_view platform);

// Primary subtag of a locale, lowercased ("en-US", "en_US.UTF-8" -> "en");
// empty for a locale without one ("C", "POSIX", "").
std::string LanguageOf(std::string_view locale);

// totalRam in GB rounded to the nearest whole GB, as a string ("8").
std::string RamBucket(double total_ram_gb);

// Shortest round-trip rendering of a JSON number, as JavaScript shows it for
// ordinary magnitudes ("120", "1.5", "-0.25").
std::string RenderNumber(double value);

}  // namespace nucleon

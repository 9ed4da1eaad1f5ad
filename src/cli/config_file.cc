#include "cli/config_file.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nucleon {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// "1" or "0" for the ways of writing a switch, empty for anything else.
std::string SwitchValue(std::string_view v) {
  std::string lower;
  for (char c : v) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "1" || lower == "true" || lower == "yes" || lower == "on") return "1";
  if (lower == "0" || lower == "false" || lower == "no" || lower == "off") return "0";
  return "";
}

}  // namespace

Result<OptionMap> ParseConfig(std::string_view text, std::string_view origin,
                              const KnownOptions& known) {
  OptionMap out;
  int number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = Trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++number;
    if (line.empty() || line.front() == '#') continue;
    const std::string where = std::string(origin) + ":" + std::to_string(number) + ": ";
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return Status::InvalidArgument(where + "expected `key = value`, not \"" + std::string(line) +
                                     "\"");
    }
    std::string key(Trim(line.substr(0, eq)));
    for (char& c : key) c = c == '_' ? '-' : c;
    const std::string_view value = Trim(line.substr(eq + 1));
    auto it = known.find(key);
    if (it == known.end()) {
      return Status::InvalidArgument(where + "unknown option \"" + key +
                                     "\" (the options are the flags' names without --)");
    }
    if (out.count(key)) return Status::InvalidArgument(where + key + " is set twice");
    if (value.empty()) continue;
    if (!it->second) {
      std::string v = SwitchValue(value);
      if (v.empty()) {
        return Status::InvalidArgument(where + key + " takes true or false, not \"" +
                                       std::string(value) + "\"");
      }
      out[key] = v;
    } else {
      out[key] = std::string(value);
    }
  }
  return out;
}

Result<OptionMap> ReadConfigFile(const std::string& path, bool required,
                                 const KnownOptions& known) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT && !required) return OptionMap{};
    return Status::Unavailable("cannot read the config file " + path + ": " + std::strerror(err));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::Unavailable("cannot read the config file " + path);
  return ParseConfig(text.str(), path, known);
}

std::string OptionEnvName(std::string_view name) {
  std::string env = "NUCLEON_";
  for (char c : name) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return env;
}

std::string ResolveOption(const OptionMap& flags, const OptionMap& file, const std::string& name,
                          const std::string& fallback) {
  if (auto it = flags.find(name); it != flags.end()) return it->second;
  if (const char* v = std::getenv(OptionEnvName(name).c_str()); v && *v) return v;
  if (auto it = file.find(name); it != file.end()) return it->second;
  return fallback;
}

}  // namespace nucleon

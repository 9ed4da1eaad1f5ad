// The configuration file of the `nucleon` command line and where each option's
// value comes from. The file holds `key = value` lines naming the same options
// as the flags (`listen = 127.0.0.1:8080`, `max-body = 5242880`); blank lines
// and lines starting with `#` are ignored, an empty value leaves the default.
// An option's value is the flag's, else NUCLEON_<NAME>'s, else the file's,
// else the command's default. Pure functions; thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/status.h"

namespace nucleon {

// Read when no --config (or NUCLEON_CONFIG) names another file; may be missing.
inline constexpr const char* kDefaultConfigPath = "/etc/nucleon/nucleon.conf";

using OptionMap = std::map<std::string, std::string>;

// The options a file may set: name -> whether it takes a value (a switch such
// as `demo` takes true/false, yes/no, on/off or 1/0).
using KnownOptions = std::map<std::string, bool>;

// The options set by `text`, read from `origin` (named in errors as
// "origin:line: ..."). Keys may be written with '_' for '-'. InvalidArgument
// for a line that is not `key = value`, an unknown key, a switch that is not
// a yes or a no, or a key set twice. Switches come back as "1" or "0".
Result<OptionMap> ParseConfig(std::string_view text, std::string_view origin,
                              const KnownOptions& known);

// The options in the file at `path`. A missing file gives no options unless
// `required`; an unreadable one is Unavailable, a malformed one InvalidArgument.
Result<OptionMap> ReadConfigFile(const std::string& path, bool required, const KnownOptions& known);

// The environment variable of an option: "max-body" -> "NUCLEON_MAX_BODY".
std::string OptionEnvName(std::string_view name);

// An option's value: `flags` (the command line), else its environment
// variable when set and not empty, else `file`, else `fallback`.
std::string ResolveOption(const OptionMap& flags, const OptionMap& file, const std::string& name,
                          const std::string& fallback);

}  // namespace nucleon

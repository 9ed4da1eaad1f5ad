// The dashboard's built files (web/, built by Vite), embedded in the binary:
// the definition is generated at build time from the build's output folder,
// so the one executable (and the .deb) carries the dashboard. Immutable data;
// thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace nucleon {

struct WebAsset {
  std::string_view path;          // "/index.html", "/assets/index-3f2a9c1b.js"
  std::string_view content_type;  // "text/html; charset=utf-8", ...
  std::string_view data;
};

// Every file of the build; empty when the build had no dashboard.
std::span<const WebAsset> WebAssets();

}  // namespace nucleon

// AppRegistry: the server's view of the catalog (which apps exist, which
// token grants which app), reloaded within a second of any change the admin
// CLI makes. Lookups are lock-free reads of an immutable snapshot; a
// background thread polls the catalog. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "store/catalog.h"

namespace nucleon {

class AppRegistry {
 public:
  explicit AppRegistry(std::unique_ptr<Catalog> catalog);
  ~AppRegistry();

  // Called with every snapshot loaded (the first at Start), on the thread
  // that loaded it: settings the server applies elsewhere (retention). Set
  // before Start.
  void OnLoad(std::function<void(const CatalogSnapshot&)> fn) { on_load_ = std::move(fn); }

  Status Start(int poll_interval_ms = 250);
  void Stop();

  bool AppExists(std::string_view app_id) const;
  // The app a token grants, or "" for a missing, unknown or revoked token.
  std::string AppForToken(std::string_view token) const;
  // Reloads now (tests, and after the server itself changed the catalog).
  Status Reload();

 private:
  std::shared_ptr<const CatalogSnapshot> Snapshot() const;

  std::unique_ptr<Catalog> catalog_;  // used only under reload_mu_
  std::mutex reload_mu_;
  mutable std::mutex snap_mu_;
  std::shared_ptr<const CatalogSnapshot> snapshot_;
  std::function<void(const CatalogSnapshot&)> on_load_;
  int64_t data_version_ = -1;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nucleon

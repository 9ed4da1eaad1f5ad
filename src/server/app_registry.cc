#include "server/app_registry.h"

#include <chrono>

#include "core/crypto.h"
#include "core/log.h"

namespace nucleon {

AppRegistry::AppRegistry(std::unique_ptr<Catalog> catalog)
    : catalog_(std::move(catalog)), snapshot_(std::make_shared<CatalogSnapshot>()) {}

AppRegistry::~AppRegistry() { Stop(); }

Status AppRegistry::Start(int poll_interval_ms) {
  NUCLEON_RETURN_IF_ERROR(Reload());
  thread_ = std::thread([this, poll_interval_ms] {
    std::unique_lock<std::mutex> lock(stop_mu_);
    std::string last_error;  // logged once, not at every poll
    while (!stopping_) {
      stop_cv_.wait_for(lock, std::chrono::milliseconds(poll_interval_ms));
      if (stopping_) break;
      lock.unlock();
      Status st = Reload();
      if (!st.ok() && st.ToString() != last_error) {
        LogWarn("catalog reload failed (the last catalog stays in use): " + st.ToString());
      } else if (st.ok() && !last_error.empty()) {
        LogInfo("catalog reloaded again");
      }
      last_error = st.ok() ? "" : st.ToString();
      lock.lock();
    }
  });
  return Status::Ok();
}

void AppRegistry::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status AppRegistry::Reload() {
  std::lock_guard<std::mutex> lock(reload_mu_);
  auto version = catalog_->DataVersion();
  if (!version.ok()) return version.status();
  if (*version == data_version_) return Status::Ok();
  auto snap = catalog_->Load();
  if (!snap.ok()) return snap.status();
  {
    std::lock_guard<std::mutex> s(snap_mu_);
    snapshot_ = *snap;
  }
  data_version_ = *version;
  if (on_load_) on_load_(**snap);
  return Status::Ok();
}

std::shared_ptr<const CatalogSnapshot> AppRegistry::Snapshot() const {
  std::lock_guard<std::mutex> lock(snap_mu_);
  return snapshot_;
}

bool AppRegistry::AppExists(std::string_view app_id) const {
  auto snap = Snapshot();
  return snap->apps.count(std::string(app_id)) > 0;
}

std::string AppRegistry::AppForToken(std::string_view token) const {
  if (token.empty()) return {};
  // Hashing first makes the lookup independent of how much of the token matches.
  auto snap = Snapshot();
  auto it = snap->token_apps.find(TokenHashHex(token));
  return it == snap->token_apps.end() ? std::string() : it->second;
}

}  // namespace nucleon

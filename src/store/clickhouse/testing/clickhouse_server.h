// ClickHouseServer: a throw-away clickhouse-server for one test binary,
// started through tests/clickhouse/server.sh on a free loopback port in a
// fresh folder and stopped by its PID. Tests only.
//
// Available() is false (and tests skip) when the server binary is not
// installed; scripts/install-deps installs it, so under `make test` it is.
#pragma once

#include <cstdint>
#include <string>

#include "core/testing/temp_dir.h"

namespace nucleon {

class ClickHouseServer {
 public:
  ClickHouseServer() = default;
  ~ClickHouseServer();  // stops the server
  ClickHouseServer(const ClickHouseServer&) = delete;
  ClickHouseServer& operator=(const ClickHouseServer&) = delete;

  static bool Available();

  // Starts the server; false (with the reason in *error) when it did not
  // answer. Start again after Stop/Kill restarts it on the same port and data.
  bool Start(std::string* error);
  void Stop();  // SIGTERM, waits until gone
  void Kill();  // SIGKILL, waits until gone

  std::string url() const;  // "http://127.0.0.1:PORT"
  uint16_t port() const { return port_; }
  bool running() const { return running_; }

 private:
  TempDir dir_;
  uint16_t port_ = 0;
  bool running_ = false;
};

}  // namespace nucleon

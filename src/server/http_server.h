// HttpServer: the network front, and the only translation unit that includes
// Boost.Beast. HTTP/1.1 keep-alive connections are handed to the Router;
// tracking WebSocket upgrades (`/app/:appId/track`, `/:appId/`) become
// sessions that feed the Ingestor and send each ack when its commit is done.
// Thread-safety: Listen/Run/RequestStop from the owning thread; RequestStop
// is also safe from a signal handler's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "geo/cidr_set.h"
#include "geo/country_lookup.h"
#include "ingest/ingestor.h"
#include "server/router.h"

namespace nucleon {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  int threads = 2;
  size_t max_body_bytes = 5 * 1024 * 1024;
  int header_timeout_seconds = 30;
  int max_inflight_messages_per_socket = 64;  // unacked WebSocket messages before reading pauses
  // Country of the client address (looked up, never kept); null: no countries.
  const CountryLookup* geo = nullptr;
  // Peers whose X-Forwarded-For / X-Real-IP headers are believed.
  CidrSet trusted_proxies;
};

class HttpServer {
 public:
  // `presence` may be null.
  HttpServer(HttpServerOptions options, Router* router, Ingestor* ingestor,
             PresenceSink* presence);
  ~HttpServer();

  // Binds and listens; returns the bound port (useful with port 0).
  Result<uint16_t> Listen();

  // Serves until SIGINT/SIGTERM (or RequestStop). Then stops accepting, calls
  // `drain` (which must return once every accepted message is committed and
  // its completion has run), lets the acks and answers go out, and returns.
  void Run(const std::function<void()>& drain);

  void RequestStop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nucleon

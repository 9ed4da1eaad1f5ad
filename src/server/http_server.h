// HttpServer: the network front, and the only translation unit that includes
// Boost.Beast. HTTP/1.1 keep-alive connections are handed to the Router;
// tracking WebSocket upgrades (`/app/:appId/track`, `/:appId/`) become
// sessions that feed the Ingestor and send each ack when its commit is done.
// Connections are capped in total and per client address, and held to a
// header deadline, a minimum body rate and (WebSockets) an idle timeout.
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

// The limits held against slow or abusive clients; 0 turns a limit off.
struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  int threads = 2;
  size_t max_body_bytes = 5 * 1024 * 1024;
  // The whole request header must arrive within this time (which also bounds
  // how long an idle keep-alive connection waits for its next request).
  int header_timeout_seconds = 10;
  // A body gets this long, plus one second per `body_min_bytes_per_second`
  // bytes received; a body slower than that is answered 408 and closed.
  int body_timeout_seconds = 20;
  size_t body_min_bytes_per_second = 1024;
  // A tracking WebSocket that sends no message for this long is closed (SDKs
  // send at least a heartbeat every 20 s).
  int ws_idle_timeout_seconds = 300;
  // Connections open at once, in total and per client address (the socket
  // peer; a trusted proxy counts only in the total).
  size_t max_connections = 100000;
  size_t max_connections_per_ip = 256;
  int max_inflight_messages_per_socket = 64;  // unacked WebSocket messages before reading pauses
  // permessage-deflate on tracking WebSockets, when the client offers it. The
  // compressor and decompressor state is most of what an idle socket costs, so
  // the window and memory level are small (tracking messages are JSON batches
  // whose repetition is within a few hundred bytes), and a message shorter
  // than the threshold (a usual ack) is sent uncompressed, so a socket whose
  // traffic is small never builds a compressor at all. Bigger acks and any
  // compressed client message still use it. See docs/performance.md.
  bool ws_deflate = true;
  int ws_deflate_window_bits = 9;  // 9..15, both directions (a 2^bits byte window)
  int ws_deflate_mem_level = 1;    // 1..9
  size_t ws_deflate_min_size = 512;
  // Country of the client address (looked up, never kept); null: no countries.
  const CountryLookup* geo = nullptr;
  // Peers whose X-Forwarded-For / X-Real-IP headers are believed.
  CidrSet trusted_proxies;
  ServerCounters* counters = nullptr;  // what the limits refused; may be null
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

// FuzzServer: the server's request-handling layers wired as `nucleon serve`
// wires them (catalog view, ingestor, group committer, live state, API,
// router), minus the sockets, for the fuzz targets that drive whole requests
// and WebSocket messages. The catalog is fixed (one app, one token, known to
// the dictionaries and seeds) and the store is a real SQLite store holding a
// small fixture that no input changes, so every input meets the same data and
// a crash reproduces from its input alone.
//
// Also the small input splitters the targets share.
//
// Thread-safety: one FuzzServer per process (Get()); Handle and Message are
// called from the fuzzing thread only, while the committer's writer thread
// runs completions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/http_types.h"

namespace nucleon {

class FuzzServer {
 public:
  // Known to the dictionaries and the seed corpora.
  static constexpr std::string_view kAppId = "fuzzApp1";
  static constexpr std::string_view kOtherAppId = "otherApp";  // exists, token does not grant it
  static constexpr std::string_view kToken = "nct_fuzzTokenFuzzTokenFuzzTokenFuzzTokenFuzzTok";
  // "Now" for the API: just after the fixture's events (2026-11-26T10:00:00Z).
  static constexpr int64_t kNowMs = 1795687200000;

  // The process-wide instance, built on first use; aborts if it cannot be built.
  static FuzzServer& Get();

  // Routes `request` as the HTTP server would and returns the one response.
  // Aborts when the router answers zero or several times, or answers JSON
  // that does not parse: both break what every client relies on.
  HttpResponse Handle(const HttpRequest& request);

  // One tracking WebSocket: the upgrade `target` is checked as the server
  // checks it, then each message is ingested on one connection. Aborts when a
  // message is not answered exactly once, or an ack is not `{"reportedIds":[...]}`.
  void Socket(std::string_view target, const std::vector<std::string_view>& messages);

  // The app a token grants ("" when none), as the API asks it.
  std::string AppForToken(std::string_view token) const;

  ~FuzzServer();

 private:
  struct Parts;
  FuzzServer();
  std::unique_ptr<Parts> parts_;
};

// Aborts unless `text` parses as JSON (invalid UTF-8 inside strings is let
// through: echoing a client's bytes is not what is being checked).
void CheckJson(std::string_view text, std::string_view what);

// Splits off the first line of `*rest` (without its '\n'); all of it when there is none.
std::string_view TakeLine(std::string_view* rest);

// A request in the targets' text form:
//   METHOD SP TARGET LF (NAME ":" VALUE LF)* LF BODY
// Header names are lowercased as the server does; a value loses leading spaces.
HttpRequest ParseRequestText(std::string_view data);

}  // namespace nucleon

// ingest_path_bench: the server's per-event costs on the ingest path, without
// the network, so that they can be compared across changes on a noisy machine.
//
//   BM_Decode        one 50-event message (4.x SDK shape) → events
//   BM_Append        one commit group of 2,000 new events into the SQLite store
//                    (transaction, dedupe index, sessions, in-memory analytics
//                    index), fsync off so that the disk does not dominate
//   BM_Observe       the live window's share of a commit (LiveState::OnCommitted)
//
// Each reports items_per_second = events per second on one core.

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/limits.h"
#include "core/time_util.h"
#include "ingest/batch_decoder.h"
#include "live/live_state.h"
#include "store/event_store.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {
namespace {

constexpr int kBatch = 50;
constexpr int kGroupBatches = 40;  // 2,000 events per commit, as under load

// One SDK message: 50 events of one device and session, ids from `first_id`.
std::string Message(int64_t first_id, int device, int session) {
  std::string body = "{\"data\":[";
  for (int i = 0; i < kBatch; ++i) {
    const int64_t id = first_id + i;
    if (i) body += ",";
    body += "{\"type\":\"event\",\"name\":\"screen_" + std::to_string(id % 20) +
            "\",\"id\":" + std::to_string(id) + ",\"date\":\"2026-11-26T10:00:" +
            std::to_string(10 + i % 40) + ".000Z\",\"payload\":{\"plan\":\"p" +
            std::to_string(id % 7) + "\",\"n\":" + std::to_string(id % 1000) +
            "},\"sessionId\":" + std::to_string(session) + ",\"userId\":\"user-" +
            std::to_string(device) + "\",\"deviceId\":\"device-" + std::to_string(device) + "\"}";
  }
  return body + "]}";
}

std::vector<Event> Decode(const std::string& body) {
  auto decoded = DecodeBatch(body, "bench-app", NowMs(), IngestLimits{});
  std::vector<Event> out;
  for (DecodedEvent& d : decoded->events) out.push_back(std::move(d.event));
  return out;
}

void BM_Decode(benchmark::State& state) {
  const std::string body = Message(1, 7, 3);
  for (auto _ : state) {
    auto decoded = DecodeBatch(body, "bench-app", NowMs(), IngestLimits{});
    benchmark::DoNotOptimize(decoded);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_Decode);

void BM_Append(benchmark::State& state) {
  const std::string dir = std::filesystem::temp_directory_path() / "nucleon-append-bench";
  std::filesystem::remove_all(dir);
  auto store = OpenSqliteEventStore(dir, {/*fsync_full=*/false, /*read_only=*/false});
  if (!store.ok()) {
    state.SkipWithError(store.status().ToString().c_str());
    return;
  }
  int64_t next_id = 1;
  int batch_no = 0;
  std::vector<uint8_t> inserted;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<Event> group;
    group.reserve(kBatch * kGroupBatches);
    for (int b = 0; b < kGroupBatches; ++b, ++batch_no) {
      for (Event& e : Decode(Message(next_id, batch_no % 1000, batch_no % 5000))) {
        group.push_back(std::move(e));
      }
      next_id += kBatch;
    }
    state.ResumeTiming();
    Status st = (*store)->Append(group, &inserted);
    if (!st.ok()) state.SkipWithError(st.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * kBatch * kGroupBatches);
  store->reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_Append)->Unit(benchmark::kMillisecond)->MinTime(3.0);

void BM_Observe(benchmark::State& state) {
  LiveState live;
  std::vector<Event> group;
  for (int b = 0; b < kGroupBatches; ++b) {
    for (Event& e : Decode(Message(1 + b * kBatch, b, b))) {
      e.time_ms = NowMs();
      group.push_back(std::move(e));
    }
  }
  const std::vector<uint8_t> inserted(group.size(), 1);
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<Event> copy = group;  // the committer hands its events over
    state.ResumeTiming();
    live.OnCommitted(std::move(copy), inserted);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(group.size()));
}
BENCHMARK(BM_Observe)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace nucleon

BENCHMARK_MAIN();

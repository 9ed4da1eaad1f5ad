// live_views_bench: what the live views cost with many devices present, without
// the network, so that changes can be compared on a noisy machine.
//
//   BM_LiveUsers/N       GET live/users with N devices online (list + JSON)
//   BM_LiveUsersCount/N  GET live/users/count, presence unchanged since the last ask
//   BM_LiveUsersCountChanging/N  the same, one device seen between two asks
//
// Devices are spread over 8 apps of which one is asked, one socket each; every
// device sent an init (its context is known, no store lookup).

#include <benchmark/benchmark.h>

#include <string>

#include "core/event.h"
#include "core/time_util.h"
#include "live/live_state.h"
#include "query/resources.h"

namespace nucleon {
namespace {

constexpr int kApps = 8;

std::string AppOf(int i) { return "app-" + std::to_string(i % kApps); }

// N devices on the asked app ("app-0") and 7N on the others.
void Fill(LiveState* live, int per_app, int64_t now) {
  for (int i = 0; i < per_app * kApps; ++i) {
    Event e;
    e.type = EventType::kInit;
    e.device_id = "device-" + std::to_string(i);
    e.user_id = "user-" + std::to_string(i / 2);
    e.user_key = e.user_id;
    e.platform = i % 3 ? "darwin" : "win32";
    e.os_version = "14.1";
    e.country = "FR";
    live->Seen(static_cast<uint64_t>(i), AppOf(i), e, now - (i % 1000));
  }
}

ApiDeps Deps(LiveState* live, int64_t now) {
  ApiDeps deps;
  deps.live = live;
  deps.now_ms = [now] { return now; };
  return deps;
}

void BM_LiveUsers(benchmark::State& state) {
  LiveState live;
  const int64_t now = NowMs();
  Fill(&live, static_cast<int>(state.range(0)), now);
  const ApiDeps deps = Deps(&live, now);
  size_t bytes = 0;
  for (auto _ : state) {
    HttpResponse r = LiveUsersResource(deps, "app-0");
    bytes = r.body.size();
    benchmark::DoNotOptimize(r);
  }
  state.counters["body_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_LiveUsers)->Arg(1000)->Arg(19000)->Unit(benchmark::kMillisecond);

void BM_LiveUsersCount(benchmark::State& state) {
  LiveState live;
  const int64_t now = NowMs();
  Fill(&live, static_cast<int>(state.range(0)), now);
  const ApiDeps deps = Deps(&live, now);
  for (auto _ : state) benchmark::DoNotOptimize(LiveUsersCountResource(deps, "app-0"));
}
BENCHMARK(BM_LiveUsersCount)->Arg(19000)->Unit(benchmark::kMicrosecond);

void BM_LiveUsersCountChanging(benchmark::State& state) {
  LiveState live;
  const int64_t now = NowMs();
  const int per_app = static_cast<int>(state.range(0));
  Fill(&live, per_app, now);
  const ApiDeps deps = Deps(&live, now);
  Event e;
  e.type = EventType::kEvent;
  e.user_key = e.user_id = "user-new";
  e.platform = "linux";
  int64_t n = 0;
  for (auto _ : state) {
    state.PauseTiming();
    e.device_id = "fresh-" + std::to_string(n);
    live.Seen(static_cast<uint64_t>(per_app * kApps + n++), "app-0", e, now);
    state.ResumeTiming();
    benchmark::DoNotOptimize(LiveUsersCountResource(deps, "app-0"));
  }
}
BENCHMARK(BM_LiveUsersCountChanging)->Arg(19000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace nucleon

BENCHMARK_MAIN();

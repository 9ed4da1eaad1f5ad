// Test support: EventStoreWrapper forwards every call to another EventStore
// (like leveldb's EnvWrapper), and FaultInjectingEventStore builds on it to
// make Append and Probe fail on demand, or to hold Append at its entry so a
// test can pile up work behind a commit in progress without sleeping. Header
// only, for tests; never linked into the server.
//
// Thread-safety: the fault and hold controls and the counters may be used from
// any thread while the writer thread calls Append/Probe. The wrapped store
// keeps its own contract (one writer thread).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "store/event_store.h"

namespace nucleon {

// Forwards every call to `target`, which must outlive the wrapper. Subclasses
// override only what they change. Every method of EventStore is forwarded here
// (a new one must be added too, or every wrapper becomes abstract).
class EventStoreWrapper : public EventStore {
 public:
  explicit EventStoreWrapper(EventStore* target) : target_(target) {}

  EventStore* target() const { return target_; }

  Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) override {
    return target_->Append(events, inserted);
  }
  Status Probe() override { return target_->Probe(); }
  bool Ready() const override { return target_->Ready(); }
  bool MaintenanceDue(bool closing) override { return target_->MaintenanceDue(closing); }
  Status Maintain() override { return target_->Maintain(); }
  std::vector<StoreMetric> Metrics() const override { return target_->Metrics(); }
  Status Export(std::string_view app_id, const std::function<void(const Event&)>& sink) override {
    return target_->Export(app_id, sink);
  }
  Status ExportRange(std::string_view app_id, int64_t from_ms, int64_t to_ms,
                     const std::function<bool(const Event&)>& sink) override {
    return target_->ExportRange(app_id, from_ms, to_ms, sink);
  }
  Status SessionEnds(
      std::string_view app_id,
      const std::function<Status(const std::string&, const std::string&, int64_t)>& sink) override {
    return target_->SessionEnds(app_id, sink);
  }
  Status Tombstones(std::string_view app_id, const std::function<void(int64_t)>& sink) override {
    return target_->Tombstones(app_id, sink);
  }
  Status StoredBeforeOpen(int64_t from_ms, int64_t to_ms, size_t per_app,
                          const std::function<void(const Event&)>& sink) override {
    return target_->StoredBeforeOpen(from_ms, to_ms, per_app, sink);
  }
  Result<StoreStats> Stats(std::string_view app_id) override { return target_->Stats(app_id); }

  Result<std::vector<QuickGlanceCounts>> QuickGlances(std::string_view app_id,
                                                      std::span<const TimeSpan> periods) override {
    return target_->QuickGlances(app_id, periods);
  }
  Result<DailyAnalytics> Daily(std::string_view app_id, const QueryRange& range) override {
    return target_->Daily(app_id, range);
  }
  Result<DailyCounts> EventCounts(std::string_view app_id, const QueryRange& range,
                                  bool errors) override {
    return target_->EventCounts(app_id, range, errors);
  }
  Result<std::vector<ErrorGroup>> ErrorGroups(std::string_view app_id,
                                              const QueryRange& range) override {
    return target_->ErrorGroups(app_id, range);
  }
  Result<SessionDays> Sessions(std::string_view app_id, const QueryRange& range) override {
    return target_->Sessions(app_id, range);
  }
  Result<std::vector<EventPropKeys>> EventProps(std::string_view app_id,
                                                const QueryRange& range) override {
    return target_->EventProps(app_id, range);
  }
  Result<std::vector<ValueCount>> EventAttribute(std::string_view app_id, const QueryRange& range,
                                                 std::string_view event,
                                                 std::string_view attr) override {
    return target_->EventAttribute(app_id, range, event, attr);
  }
  Result<UserList> Users(std::string_view app_id, int64_t page, int64_t limit,
                         std::string_view search) override {
    return target_->Users(app_id, page, limit, search);
  }
  Result<UserDetails> User(std::string_view app_id, std::string_view user_key) override {
    return target_->User(app_id, user_key);
  }
  Result<std::vector<EventView>> SessionEvents(std::string_view app_id, std::string_view user_key,
                                               std::string_view session_id,
                                               std::string_view device_id) override {
    return target_->SessionEvents(app_id, user_key, session_id, device_id);
  }
  Result<std::vector<EventView>> DeviceContexts(std::string_view app_id,
                                                std::span<const std::string> device_ids) override {
    return target_->DeviceContexts(app_id, device_ids);
  }
  Result<std::vector<EventView>> WithSessionContexts(std::span<const Event> events) override {
    return target_->WithSessionContexts(events);
  }
  Status DeleteUser(std::string_view app_id, std::string_view user_key) override {
    return target_->DeleteUser(app_id, user_key);
  }
  void SetRetention(const RetentionPolicy& policy) override { target_->SetRetention(policy); }
  void PrepareDeleteUser(std::string_view app_id, std::string_view user_key) override {
    target_->PrepareDeleteUser(app_id, user_key);
  }

 private:
  EventStore* target_;
};

class FaultInjectingEventStore : public EventStoreWrapper {
 public:
  // Passed as `count` to FailAppends/FailProbes: fail until ClearFaults().
  static constexpr int kUntilCleared = -1;

  explicit FaultInjectingEventStore(EventStore* target) : EventStoreWrapper(target) {}

  // The next `count` Appends (every one with kUntilCleared) return `status`
  // without reaching the target, so nothing of their batch is stored.
  void FailAppends(Status status, int count = kUntilCleared) {
    std::lock_guard<std::mutex> lock(mu_);
    append_fault_ = std::move(status);
    append_faults_left_ = count;
  }

  // The next `count` Probes (every one with kUntilCleared) return `status`.
  void FailProbes(Status status, int count = kUntilCleared) {
    std::lock_guard<std::mutex> lock(mu_);
    probe_fault_ = std::move(status);
    probe_faults_left_ = count;
  }

  // Appends and Probes reach the target again.
  void ClearFaults() {
    std::lock_guard<std::mutex> lock(mu_);
    append_faults_left_ = 0;
    probe_faults_left_ = 0;
  }

  // From now on, Append blocks at its entry (before any fault is applied)
  // until ReleaseAppends().
  void HoldAppends() {
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = true;
  }
  void ReleaseAppends() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      holding_ = false;
    }
    cv_.notify_all();
  }
  // Blocks until an Append is waiting in the hold.
  void WaitUntilAppendHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return held_ > 0; });
  }

  // Counters: calls that returned, of which failed (injected or not), and the
  // number of events each Append call carried, in call order.
  int append_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return append_calls_;
  }
  int failed_appends() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_appends_;
  }
  int probe_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return probe_calls_;
  }
  std::vector<size_t> append_sizes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return append_sizes_;
  }

  Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) override {
    Status fault;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++held_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return !holding_; });
      --held_;
      fault = TakeFault(&append_fault_, &append_faults_left_);
    }
    Status st = fault;
    if (fault.ok()) {
      st = EventStoreWrapper::Append(events, inserted);
    } else {
      inserted->assign(events.size(), 0);
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++append_calls_;
    if (!st.ok()) ++failed_appends_;
    append_sizes_.push_back(events.size());
    return st;
  }

  Status Probe() override {
    Status fault;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++probe_calls_;
      fault = TakeFault(&probe_fault_, &probe_faults_left_);
    }
    return fault.ok() ? EventStoreWrapper::Probe() : fault;
  }

 private:
  // The fault to inject now (Ok for none); counts down a limited fault.
  static Status TakeFault(const Status* fault, int* left) {
    if (*left == 0) return Status::Ok();
    if (*left > 0) --*left;
    return *fault;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status append_fault_;
  int append_faults_left_ = 0;
  Status probe_fault_;
  int probe_faults_left_ = 0;
  bool holding_ = false;
  int held_ = 0;
  int append_calls_ = 0;
  int failed_appends_ = 0;
  int probe_calls_ = 0;
  std::vector<size_t> append_sizes_;
};

}  // namespace nucleon

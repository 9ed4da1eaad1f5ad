#include "ingest/group_committer.h"

#include <chrono>
#include <iterator>

#include "core/log.h"

namespace nucleon {

GroupCommitter::GroupCommitter(EventStore* store, Options options, IngestCounters* counters)
    : store_(store), options_(options), counters_(counters) {
  reaper_ = std::thread([this] { RunReaper(); });
  thread_ = std::thread([this] { Run(); });
}

GroupCommitter::~GroupCommitter() { Stop(); }

Status GroupCommitter::Submit(std::vector<Event> events, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("server is shutting down");
    if (pending_events_ > 0 && pending_events_ + events.size() > options_.max_pending_events) {
      counters_->rejected_backlog.fetch_add(1, std::memory_order_relaxed);
      return Status::Unavailable("storage is behind; try again shortly");
    }
    pending_events_ += events.size();
    ++submitted_;
    // Moved into the shared queue here, on the caller's thread, so that the
    // writer takes a whole group with one swap.
    queued_events_.insert(queued_events_.end(), std::make_move_iterator(events.begin()),
                          std::make_move_iterator(events.end()));
    queue_.push_back({events.size(), std::move(done), {}, {}});
  }
  cv_.notify_one();
  return Status::Ok();
}

Status GroupCommitter::RunExclusive(std::function<Status()> task,
                                    std::function<void(const Status&)> done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("server is shutting down");
    ++submitted_;
    Pending p;
    p.task = std::move(task);
    p.task_done = std::move(done);
    queue_.push_back(std::move(p));
  }
  cv_.notify_one();
  return Status::Ok();
}

void GroupCommitter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(reap_mu_);
    reap_stopping_ = true;
  }
  reap_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

void GroupCommitter::Reap(std::vector<Event> events) {
  {
    std::lock_guard<std::mutex> lock(reap_mu_);
    // A reaper that falls behind must not hold memory without bound.
    if (!reap_stopping_ && reap_.size() < 8) {
      reap_.push_back(std::move(events));
      reap_cv_.notify_one();
      return;
    }
  }
  events.clear();
}

void GroupCommitter::RunReaper() {
  std::unique_lock<std::mutex> lock(reap_mu_);
  for (;;) {
    reap_cv_.wait(lock, [&] { return reap_stopping_ || !reap_.empty(); });
    if (reap_.empty()) return;
    std::vector<Event> events = std::move(reap_.front());
    reap_.pop_front();
    lock.unlock();
    events.clear();
    lock.lock();
  }
}

void GroupCommitter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = submitted_;
  flushed_cv_.wait(lock, [&] { return completed_ >= target || !thread_.joinable(); });
}

void GroupCommitter::Run() {
  std::vector<Pending> group;
  std::vector<Event> events;
  std::vector<uint8_t> inserted;
  std::vector<uint8_t> slice;
  auto last_activity = std::chrono::steady_clock::now();
  for (;;) {
    group.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto probe_every = std::chrono::milliseconds(options_.probe_interval_ms);
      cv_.wait_until(lock, last_activity + probe_every,
                     [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stopping_) break;
        lock.unlock();
        Status st = store_->Probe();
        if (healthy_.exchange(st.ok()) != st.ok()) {
          st.ok() ? LogInfo("storage is writable again") : LogError("storage probe failed: " + st.ToString());
        }
        last_activity = std::chrono::steady_clock::now();
        continue;
      }
      if (queue_.front().task) {
        Pending p = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        Status st = p.task();
        last_activity = std::chrono::steady_clock::now();
        p.task_done(st);
        lock.lock();
        ++completed_;
        flushed_cv_.notify_all();
        continue;
      }
      size_t n = 0;
      while (!queue_.empty() && !queue_.front().task &&
             (group.empty() || n + queue_.front().count <= options_.max_group_events)) {
        n += queue_.front().count;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      pending_events_ -= n;
      events.clear();
      if (n == queued_events_.size()) {
        events.swap(queued_events_);
      } else {
        const auto end = queued_events_.begin() + static_cast<std::ptrdiff_t>(n);
        events.assign(std::make_move_iterator(queued_events_.begin()),
                      std::make_move_iterator(end));
        queued_events_.erase(queued_events_.begin(), end);
      }
    }
    Status st = store_->Append(events, &inserted);
    last_activity = std::chrono::steady_clock::now();
    if (healthy_.exchange(st.ok()) != st.ok() && st.ok()) LogInfo("storage is writable again");
    if (st.ok()) {
      counters_->commits.fetch_add(1, std::memory_order_relaxed);
      uint64_t stored = 0, hb = 0;
      for (size_t i = 0; i < events.size(); ++i) {
        if (events[i].type == EventType::kHeartbeat) ++hb;
        else if (inserted[i]) ++stored;
      }
      counters_->events_stored.fetch_add(stored, std::memory_order_relaxed);
      counters_->heartbeats.fetch_add(hb, std::memory_order_relaxed);
      counters_->events_duplicate.fetch_add(events.size() - stored - hb, std::memory_order_relaxed);
      if (observer_) observer_->OnCommitted(std::move(events), inserted);
    } else {
      counters_->commit_failures.fetch_add(1, std::memory_order_relaxed);
      LogError("commit of " + std::to_string(events.size()) + " events failed: " + st.ToString());
    }
    size_t offset = 0;
    for (Pending& p : group) {
      const size_t n = p.count;
      if (st.ok()) {
        slice.assign(inserted.begin() + static_cast<std::ptrdiff_t>(offset),
                     inserted.begin() + static_cast<std::ptrdiff_t>(offset + n));
      } else {
        slice.assign(n, 0);
      }
      offset += n;
      try {
        p.done(st, slice);
      } catch (const std::exception& ex) {
        LogError(std::string("ack completion threw: ") + ex.what());
      }
    }
    Reap(std::move(events));
    events = {};
    {
      std::lock_guard<std::mutex> lock(mu_);
      completed_ += group.size();
    }
    flushed_cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  flushed_cv_.notify_all();
}

}  // namespace nucleon

#pragma once
// A fixed set of threads running jobs of one type, with a bounded queue.
// submit() never blocks: the loop thread must not wait on handlers. Jobs are
// stored by value (no std::function per job) and handed over in batches: one
// lock and at most one wake-up per idle thread for everything one read of
// the socket delivered.

#include "switchboard/shared/log.hpp"

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sb::broker::detail {

template <class Job>
class WorkerPool {
 public:
  using Run = std::function<void(Job&)>;

  WorkerPool(std::size_t threads, std::size_t capacity, Run run)
      : capacity_(capacity), run_(std::move(run)) {
    if (threads == 0) threads = 1;
    threads_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  ~WorkerPool() { stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Moves jobs in from the front of `jobs` while there is room; returns how
  /// many were taken (the rest stay in `jobs`). 0 once stopping.
  std::size_t submit(std::vector<Job>& jobs) {
    std::size_t taken = 0;
    std::size_t wake = 0;
    {
      std::lock_guard lk(mu_);
      if (stopping_) return 0;
      while (taken < jobs.size() && queue_.size() < capacity_) {
        queue_.push_back(std::move(jobs[taken]));
        ++taken;
      }
      wake = std::min(taken, idle_);
    }
    for (std::size_t i = 0; i < wake; ++i) cv_.notify_one();
    return taken;
  }

  /// Lets running jobs finish, drops queued ones (returns how many), joins.
  std::size_t stop() {
    std::size_t dropped = 0;
    {
      std::lock_guard lk(mu_);
      if (stopping_ && threads_.empty()) return 0;
      stopping_ = true;
      dropped = queue_.size();
      queue_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
    return dropped;
  }

 private:
  void work() {
    for (;;) {
      Job job;
      {
        std::unique_lock lk(mu_);
        ++idle_;
        cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
        --idle_;
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      try {
        run_(job);
      } catch (const std::exception& e) {
        // Jobs catch their handler's exceptions; reaching here is a bug in
        // this library, not in a handler.
        sb::log::error("broker worker job threw", {{"error", e.what()}});
      } catch (...) {
        sb::log::error("broker worker job threw a non-exception");
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::size_t capacity_;
  std::size_t idle_ = 0;
  bool stopping_ = false;
  Run run_;
  std::vector<std::thread> threads_;
};

}  // namespace sb::broker::detail

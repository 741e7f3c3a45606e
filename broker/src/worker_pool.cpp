#include "worker_pool.hpp"

#include "switchboard/shared/log.hpp"

namespace sb::broker::detail {

WorkerPool::WorkerPool(std::size_t threads, std::size_t capacity) : capacity_(capacity) {
  if (threads == 0) threads = 1;
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool() {
  stop();
}

bool WorkerPool::submit(std::function<void()> task) {
  {
    std::lock_guard lk(mu_);
    if (stopping_ || queue_.size() >= capacity_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

std::size_t WorkerPool::stop() {
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

void WorkerPool::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      // Tasks catch their handler's exceptions; reaching here is a bug in
      // this library, not in a handler.
      sb::log::error("broker worker task threw", {{"error", e.what()}});
    } catch (...) {
      sb::log::error("broker worker task threw a non-exception");
    }
  }
}

}  // namespace sb::broker::detail

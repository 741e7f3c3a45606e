#pragma once
// A fixed set of threads running handlers, with a bounded queue. submit()
// never blocks: the loop thread must not wait on handlers.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sb::broker::detail {

class WorkerPool {
 public:
  WorkerPool(std::size_t threads, std::size_t capacity);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// False when the queue is full or the pool is stopping.
  bool submit(std::function<void()> task);
  /// Lets running tasks finish, drops queued ones (returns how many), joins.
  std::size_t stop();

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::size_t capacity_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace sb::broker::detail

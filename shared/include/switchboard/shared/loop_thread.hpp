#pragma once
// A background thread with a cooperative stop, for components that run a
// loop: start(body) runs body on its own thread; stop() marks it stopping,
// wakes every wait and joins. Its mutex is meant to guard the owner's state
// too, so one notify() wakes waits on that state and on stopping alike.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace sb::app {

class LoopThread {
 public:
  LoopThread() = default;
  ~LoopThread() { stop(); }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  void start(std::function<void()> body) { thread_ = std::thread(std::move(body)); }

  /// Idempotent. Returns false when it was already stopped.
  bool stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return false;
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    return true;
  }

  bool stopping() const {
    std::lock_guard lock(mutex_);
    return stopping_;
  }
  /// For callers that already hold mutex().
  bool stopping_locked() const noexcept { return stopping_; }

  std::mutex& mutex() const noexcept { return mutex_; }
  void notify() { cv_.notify_all(); }

  /// Waits up to `d`, until stop() or until pred() (called with mutex() held)
  /// is true. Returns false when stopping.
  template <class Pred>
  bool wait_for(std::chrono::milliseconds d, Pred pred) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, d, [&] { return stopping_ || pred(); });
    return !stopping_;
  }
  bool wait_for(std::chrono::milliseconds d) {
    return wait_for(d, [] { return false; });
  }
  /// The same with mutex() already held through `lock`.
  template <class Pred>
  bool wait_for(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds d, Pred pred) {
    cv_.wait_for(lock, d, [&] { return stopping_ || pred(); });
    return !stopping_;
  }

 private:
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

}  // namespace sb::app

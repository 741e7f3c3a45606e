#pragma once
// The edge's bounded pool of Redis connections (idempotency keys, command
// status, rate limits); a caller waits at most acquire_timeout. Private to
// edge_lib.

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "switchboard/edge/idempotency.hpp"
#include "switchboard/shared/redis.hpp"

namespace sb::edge {

// A bounded pool of Redis connections; a caller waits at most acquire_timeout.
class RedisPool {
 public:
  explicit RedisPool(RedisPoolOptions options) : options_(std::move(options)) {}

  template <typename F>
  auto with(F&& f) {
    std::unique_ptr<redis::Client> c = acquire();
    struct Back {
      RedisPool* pool;
      std::unique_ptr<redis::Client>* c;
      ~Back() { pool->give_back(std::move(*c)); }
    } back{this, &c};
    return f(*c);
  }

 private:
  std::unique_ptr<redis::Client> acquire() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, options_.acquire_timeout,
                      [&] { return !idle_.empty() || created_ < options_.connections; })) {
      throw redis::TimeoutError("no Redis connection free within the deadline");
    }
    if (!idle_.empty()) {
      auto c = std::move(idle_.front());
      idle_.pop_front();
      return c;
    }
    ++created_;
    lock.unlock();
    try {
      redis::Options o;
      o.url = options_.url;
      o.command_timeout = options_.command_timeout;
      o.connect_timeout = options_.command_timeout;
      return std::make_unique<redis::Client>(o);
    } catch (...) {
      std::lock_guard relock(mu_);
      --created_;
      cv_.notify_one();
      throw;
    }
  }

  void give_back(std::unique_ptr<redis::Client> c) {
    std::lock_guard lock(mu_);
    if (c) {
      idle_.push_back(std::move(c));
    } else {
      --created_;
    }
    cv_.notify_one();
  }

  RedisPoolOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<redis::Client>> idle_;
  std::size_t created_ = 0;
};

}  // namespace sb::edge

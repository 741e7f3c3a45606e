// The bounded connection pool and the retrying transaction runner.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "switchboard/shared/log.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::pg {

struct Pool::State {
  explicit State(PoolOptions o) : options(std::move(o)) {}

  const PoolOptions options;
  mutable std::mutex mutex;
  std::condition_variable freed;
  std::deque<std::unique_ptr<Connection>> idle;  // most recently used at the back
  std::size_t open = 0;                          // idle + leased + being opened
  std::size_t leased = 0;
  std::uint64_t discarded = 0;

  void give_back(std::unique_ptr<Connection> c) noexcept {
    const bool keep = c && c->is_open();
    {
      std::lock_guard lock(mutex);
      --leased;
      if (keep) {
        idle.push_back(std::move(c));
      } else {
        --open;
        ++discarded;
      }
    }
    freed.notify_one();
    if (!keep) sb::log::warn("pg pool: dropped a lost connection");
  }
};

Pool::Pool(PoolOptions options) : state_(std::make_shared<State>(std::move(options))) {
  if (state_->options.max_size == 0) throw UsageError("pg pool: max_size must be at least 1");
}

Pool::~Pool() = default;

const PoolOptions& Pool::options() const noexcept {
  return state_->options;
}

Pool::Stats Pool::stats() const {
  std::lock_guard lock(state_->mutex);
  Stats s;
  s.open = state_->open;
  s.idle = state_->idle.size();
  s.leased = state_->leased;
  s.discarded = state_->discarded;
  return s;
}

Pool::Lease Pool::acquire() {
  return acquire(state_->options.acquire_timeout);
}

Pool::Lease Pool::acquire(std::chrono::milliseconds timeout) {
  auto& s = *state_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(s.mutex);
  for (;;) {
    // Reuse the most recently returned connection first: it is the one most
    // likely to be alive, and the others can age out on the server side.
    while (!s.idle.empty()) {
      auto c = std::move(s.idle.back());
      s.idle.pop_back();
      if (c->check_alive()) {
        ++s.leased;
        return Lease(state_, std::move(c));
      }
      --s.open;
      ++s.discarded;
      lock.unlock();
      sb::log::warn("pg pool: dropped a lost idle connection");
      c.reset();
      lock.lock();
    }
    if (s.open < s.options.max_size) {
      ++s.open;  // reserve the slot, connect without holding the lock
      lock.unlock();
      try {
        auto c = std::make_unique<Connection>(s.options.connection);
        lock.lock();
        ++s.leased;
        return Lease(state_, std::move(c));
      } catch (...) {
        lock.lock();
        --s.open;
        lock.unlock();
        s.freed.notify_one();
        throw;
      }
    }
    if (s.freed.wait_until(lock, deadline) == std::cv_status::timeout && s.idle.empty() &&
        s.open >= s.options.max_size) {
      throw PoolTimeout("pg pool: no connection free within " + std::to_string(timeout.count()) +
                        " ms (max_size " + std::to_string(s.options.max_size) + ", all in use)");
    }
  }
}

Pool::Lease::Lease(std::shared_ptr<State> state, std::unique_ptr<Connection> connection)
    : state_(std::move(state)), connection_(std::move(connection)) {}

Pool::Lease::~Lease() {
  release();
}

Pool::Lease::Lease(Lease&& other) noexcept = default;

Pool::Lease& Pool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    connection_ = std::move(other.connection_);
  }
  return *this;
}

void Pool::Lease::release() noexcept {
  if (state_ && connection_) state_->give_back(std::move(connection_));
  state_.reset();
}

// ---------------------------------------------------------------------------

namespace detail {

namespace {
std::chrono::milliseconds backoff(const RetryPolicy& p, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto cap = p.initial_backoff;
  for (int i = 1; i < attempt && cap < p.max_backoff; ++i) cap *= 2;
  cap = std::min(cap, p.max_backoff);
  if (cap.count() <= 0) return std::chrono::milliseconds(0);
  std::uniform_int_distribution<std::int64_t> d(0, cap.count());
  return std::chrono::milliseconds(d(rng));
}
}  // namespace

void run_transaction(Pool& pool, const std::function<void(Transaction&)>& body,
                     const RetryPolicy& retry, const TransactionOptions& options) {
  const int attempts = std::max(1, retry.max_attempts);
  for (int attempt = 1;; ++attempt) {
    try {
      auto lease = pool.acquire();
      auto tx = lease->begin(options);
      body(tx);
      tx.commit();
      return;
    } catch (const InDoubtError&) {
      throw;  // the commit may have happened: the caller must find out
    } catch (const Error& e) {
      if (!e.is_retryable() || attempt >= attempts) throw;
      const auto wait = backoff(retry, attempt);
      sb::log::warn("pg transaction failed; retrying",
                    {{"attempt", attempt},
                     {"sqlstate", e.sqlstate()},
                     {"error", e.what()},
                     {"backoff_ms", static_cast<std::int64_t>(wait.count())}});
      std::this_thread::sleep_for(wait);
    }
  }
}

}  // namespace detail

}  // namespace sb::pg

#pragma once
// Wakes an event loop from other threads: a Linux eventfd the loop watches
// for readability (e.g. with a uv_poll_t), and a flag so that many signals
// before the loop runs cost one write(2).
//
// Why not uv_async_t: in libuv 1.44 the loop busy-waits (up to ~1000 pause
// iterations) for a sender that is still inside uv_async_send, which on a
// busy 2-core box burned ~10% of the edge's CPU. This has no spin.
//
// Use: senders queue their work, then signal(). The loop's readable
// callback calls clear() first, then takes the queued work — work queued
// after clear() signals again, so nothing is left waiting.

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <stdexcept>

namespace sb {

class Wakeup {
 public:
  Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error("eventfd failed");
  }
  ~Wakeup() { ::close(fd_); }
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  int fd() const noexcept { return fd_; }

  /// Any thread. At most one write(2) until the loop's next clear().
  void signal() noexcept {
    if (signaled_.exchange(true, std::memory_order_acq_rel)) return;
    const std::uint64_t one = 1;
    while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }

  /// The loop, when fd() is readable, before it takes the queued work.
  void clear() noexcept {
    std::uint64_t n = 0;
    while (::read(fd_, &n, sizeof n) < 0 && errno == EINTR) {
    }
    signaled_.store(false, std::memory_order_release);
  }

 private:
  int fd_;
  std::atomic<bool> signaled_{false};
};

}  // namespace sb

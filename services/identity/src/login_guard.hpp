#pragma once
// Failed-login counting in Redis (docs/protocol.md 11.3): per tenant/username
// and per client address, fixed windows; and the bounded pool of Argon2id
// slots so a login flood cannot exhaust memory. Redis being down never
// blocks a login: the counters fail open (logged).

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <string>
#include <string_view>

namespace sb::redis {
class Client;
}

namespace sb::identity {

struct LoginGuardOptions {
  std::string redis_url;  // empty: no counting
  std::int64_t user_limit = 5;
  std::int64_t address_limit = 20;
  std::chrono::seconds window{15 * 60};
};

class LoginGuard {
 public:
  explicit LoginGuard(LoginGuardOptions options);
  ~LoginGuard();
  LoginGuard(const LoginGuard&) = delete;
  LoginGuard& operator=(const LoginGuard&) = delete;

  /// Seconds until the caller may try again, when either counter is at its
  /// limit; nullopt otherwise (also when Redis cannot be reached).
  std::optional<std::int64_t> blocked(std::string_view tenant, std::string_view username,
                                      std::string_view address);
  void failed(std::string_view tenant, std::string_view username, std::string_view address);
  /// Clears the per-user counter (not the address's).
  void succeeded(std::string_view tenant, std::string_view username);

 private:
  std::string user_key(std::string_view tenant, std::string_view username) const;
  std::string address_key(std::string_view address) const;
  void log_failure(const char* what, const std::exception& e);

  LoginGuardOptions options_;
  std::unique_ptr<redis::Client> redis_;
  std::mutex log_mu_;
  std::chrono::steady_clock::time_point last_log_{};
};

/// A fixed number of slots for Argon2id work (each costs ~19 MiB).
class HashSlots {
 public:
  explicit HashSlots(std::size_t slots) : sem_(static_cast<std::ptrdiff_t>(slots)) {}
  /// Takes a slot within `wait`; false when all stayed busy.
  bool acquire(std::chrono::milliseconds wait) { return sem_.try_acquire_for(wait); }
  void release() { sem_.release(); }

 private:
  std::counting_semaphore<> sem_;
};

/// Holds a slot for a scope.
class SlotLease {
 public:
  SlotLease(HashSlots& slots, std::chrono::milliseconds wait)
      : slots_(slots), held_(slots.acquire(wait)) {}
  ~SlotLease() {
    if (held_) slots_.release();
  }
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  explicit operator bool() const noexcept { return held_; }

 private:
  HashSlots& slots_;
  bool held_;
};

/// The key for per-address counting: the first entry of the address the edge
/// passes (x-sb-client-address, the socket's peer), else "unknown".
std::string client_address(std::string_view edge_address);

}  // namespace sb::identity

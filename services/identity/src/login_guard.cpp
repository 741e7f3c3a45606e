// Failed-login counters and Argon2id slots (login_guard.hpp).
#include "login_guard.hpp"

#include <algorithm>

#include "switchboard/shared/log.hpp"
#include "switchboard/shared/redis.hpp"
#include "switchboard/shared/text.hpp"

namespace sb::identity {
namespace {

// INCR, and start the window on the first failure (one round trip, atomic).
constexpr std::string_view kCountFailure =
    "local n = redis.call('INCR', KEYS[1]) "
    "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
    "return n";

}  // namespace

LoginGuard::LoginGuard(LoginGuardOptions options) : options_(std::move(options)) {
  if (!options_.redis_url.empty()) {
    redis::Options o;
    o.url = options_.redis_url;
    o.connect_timeout = std::chrono::milliseconds(300);
    o.command_timeout = std::chrono::milliseconds(300);
    redis_ = std::make_unique<redis::Client>(o);
  }
}

LoginGuard::~LoginGuard() = default;

std::string LoginGuard::user_key(std::string_view tenant, std::string_view username) const {
  return "sb:identity:login_failures:user:" + std::string(tenant) + "/" + std::string(username);
}

std::string LoginGuard::address_key(std::string_view address) const {
  return "sb:identity:login_failures:addr:" + std::string(address);
}

void LoginGuard::log_failure(const char* what, const std::exception& e) {
  // At most one line per 10 s: a Redis outage must not flood the log.
  std::lock_guard lk(log_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_log_ < std::chrono::seconds(10)) return;
  last_log_ = now;
  log::warn("login failure counter unavailable; letting logins through",
            {{"op", what}, {"error", e.what()}});
}

std::optional<std::int64_t> LoginGuard::blocked(std::string_view tenant, std::string_view username,
                                                std::string_view address) {
  if (!redis_) return std::nullopt;
  try {
    std::int64_t wait_ms = 0;
    auto check = [&](const std::string& key, std::int64_t limit) {
      auto v = redis_->get(key);
      if (!v) return;
      std::int64_t n = 0;
      try {
        n = std::stoll(*v);
      } catch (const std::exception&) {
        return;
      }
      if (n < limit) return;
      auto ttl = redis_->pttl(key);
      wait_ms = std::max(wait_ms, ttl > 0 ? ttl : std::int64_t{1000});
    };
    check(user_key(tenant, username), options_.user_limit);
    check(address_key(address), options_.address_limit);
    if (wait_ms == 0) return std::nullopt;
    return std::max<std::int64_t>(1, (wait_ms + 999) / 1000);
  } catch (const redis::Error& e) {
    log_failure("check", e);
    return std::nullopt;
  }
}

void LoginGuard::failed(std::string_view tenant, std::string_view username,
                        std::string_view address) {
  if (!redis_) return;
  const auto window_ms = std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.window).count());
  try {
    redis_->eval(kCountFailure, {user_key(tenant, username)}, {window_ms});
    redis_->eval(kCountFailure, {address_key(address)}, {window_ms});
  } catch (const redis::Error& e) {
    log_failure("count", e);
  }
}

void LoginGuard::succeeded(std::string_view tenant, std::string_view username) {
  if (!redis_) return;
  try {
    redis_->del(user_key(tenant, username));
  } catch (const redis::Error& e) {
    log_failure("clear", e);
  }
}

std::string client_address(std::string_view edge_address) {
  const auto first = text::trim(edge_address.substr(0, edge_address.find(',')));
  if (first.empty() || first.size() > 64) return "unknown";
  return std::string(first);
}

}  // namespace sb::identity

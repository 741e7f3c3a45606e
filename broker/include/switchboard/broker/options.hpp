#pragma once
// Connection settings and the library's error types.

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace sb::broker {

struct ConnectionOptions {
  /// amqp://user:password@host:port/vhost (vhost URL-encoded; empty = "/").
  std::string url = "amqp://guest:guest@127.0.0.1:5672/";
  /// Shown in the management UI and used as the `connection` metric label.
  std::string name = "switchboard";
  /// AMQP heartbeat. Two missed intervals mark the connection lost.
  std::chrono::seconds heartbeat{10};
  /// Deadline of each connect attempt: TCP, login, channel open, and of the
  /// synchronous methods of the admin API.
  std::chrono::milliseconds connect_timeout{5000};
  /// Reconnect backoff doubles from min to max after each failed attempt.
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
};

/// The user an AMQP URL logs in as, decoded as the client decodes it
/// ("guest" when the URL names none) — the `user_id` its messages carry.
/// Throws BrokerError for a malformed URL.
std::string login_user(const std::string& url);

/// Root of the broker library's exceptions.
class BrokerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A call did not complete before its deadline.
class TimeoutError : public BrokerError {
 public:
  using BrokerError::BrokerError;
};

/// The broker refused a declaration, a consume or a command (reply text in what()).
class RejectedError : public BrokerError {
 public:
  using BrokerError::BrokerError;
};

/// The object was closed before the call could complete.
class ClosedError : public BrokerError {
 public:
  using BrokerError::BrokerError;
};

}  // namespace sb::broker

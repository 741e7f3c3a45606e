#pragma once
// A blocking Redis client: one connection, AUTH and SELECT from the URL,
// a deadline on connecting and on every command, and reconnection on the
// next command after a connection error. hiredis stays private to
// src/redis.cpp.
//
// Failure model: a command that hits a connection error or its timeout
// throws (ConnectionError / TimeoutError) and drops the connection; it is
// never retried by the client, because the command may have run (INCR twice
// is not INCR once). The next command opens a new connection.
//
// Thread-safety: a Client may be shared; its calls are serialised on its one
// connection. For parallel traffic give each thread its own Client.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sb::redis {

/// Root of every error this client throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Could not connect, or the connection failed during a command (the
/// command's outcome is then unknown). The next command reconnects.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

/// The connect or command deadline passed (a hung or frozen server).
class TimeoutError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};

/// The server answered with an error reply (-ERR, -WRONGTYPE, ...), thrown
/// by the convenience calls; command() returns such replies instead.
class ReplyError : public Error {
 public:
  using Error::Error;
};

/// One reply, copied out of hiredis.
class Reply {
 public:
  enum class Type { nil, integer, string, array, status, error };

  Reply() = default;  // nil
  static Reply integer(std::int64_t value);
  static Reply string(std::string value);
  static Reply status(std::string value);
  static Reply error(std::string message);
  static Reply array(std::vector<Reply> elements);

  Type type() const noexcept { return type_; }
  bool is_nil() const noexcept { return type_ == Type::nil; }
  bool is_error() const noexcept { return type_ == Type::error; }

  /// Each throws Error when the reply has another type.
  std::int64_t as_integer() const;
  /// The text of a string, status or error reply.
  const std::string& as_string() const;
  const std::vector<Reply>& elements() const;

  /// Throws ReplyError with the server's message if this is an error reply.
  const Reply& throw_if_error() const;

 private:
  Type type_ = Type::nil;
  std::int64_t integer_ = 0;
  std::string text_;
  std::vector<Reply> elements_;
};

std::string_view to_string(Reply::Type type) noexcept;

/// Where and how to connect, from redis://[[user]:password@]host[:port][/db].
struct Endpoint {
  std::string host;
  int port = 6379;
  std::string username;  // empty: AUTH with the password only
  std::string password;  // empty: no AUTH
  int db = 0;
};

/// Throws Error on a malformed URL. User and password are percent-decoded.
Endpoint parse_url(std::string_view url);

struct Options {
  std::string url;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds command_timeout{2000};
};

class Client {
 public:
  /// Parses the URL now; connects on the first command.
  explicit Client(Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Sends one command; error replies are returned, not thrown.
  Reply command(std::initializer_list<std::string_view> args);
  Reply command(const std::vector<std::string>& args);

  void ping();
  std::optional<std::string> get(std::string_view key);
  /// SET, with PX when ttl is given.
  void set(std::string_view key, std::string_view value,
           std::optional<std::chrono::milliseconds> ttl = std::nullopt);
  /// SET NX: true when the key was absent and is now set.
  bool set_if_absent(std::string_view key, std::string_view value,
                     std::optional<std::chrono::milliseconds> ttl = std::nullopt);
  /// Number of keys removed.
  std::int64_t del(std::string_view key);
  std::int64_t incr(std::string_view key);
  std::int64_t incr_by(std::string_view key, std::int64_t delta);
  /// PEXPIRE: false when the key does not exist.
  bool expire(std::string_view key, std::chrono::milliseconds ttl);
  /// PTTL: remaining ms; -1 when the key has no TTL, -2 when it does not exist.
  std::int64_t pttl(std::string_view key);
  /// EVAL; an error reply (including a script error) throws ReplyError.
  Reply eval(std::string_view script, const std::vector<std::string>& keys,
             const std::vector<std::string>& args);

  /// Whether a connection is currently open (it may still turn out broken).
  bool is_connected() const;
  const Endpoint& endpoint() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::redis

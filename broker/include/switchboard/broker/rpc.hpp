#pragma once
// Request/reply over sb.rpc with direct reply-to.
//
// A request is published mandatory to sb.rpc with routing key = service and
// expiration = its remaining deadline, so a request to a service with no
// queue fails at once (no_route) and one nobody picked up in time expires in
// the broker. The server checks the deadline again before running the
// handler: a request whose caller already timed out never runs. A reply
// arriving after its deadline is dropped and counted.

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/message.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/topology.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>

namespace sb::broker {

inline constexpr std::string_view kDeadlineHeader = "x-sb-deadline";   // epoch ms
inline constexpr std::string_view kRpcErrorHeader = "x-sb-rpc-error";  // set on error replies

enum class RpcErrorCode {
  no_route,         // no queue for the service (no live instance)
  timeout,          // no reply before the deadline
  connection_lost,  // the connection dropped while the call was in flight
  remote,           // the handler threw; what() carries its message
  overloaded,       // too many calls in flight on this client
  closed,           // the client was closed
};

const char* to_string(RpcErrorCode code);

class RpcError : public BrokerError {
 public:
  RpcError(RpcErrorCode code, const std::string& message) : BrokerError(message), code_(code) {}
  RpcErrorCode code() const { return code_; }

 private:
  RpcErrorCode code_;
};

struct RpcClientOptions {
  ConnectionOptions connection;
  std::size_t max_in_flight = 4096;
};

class RpcClient {
 public:
  explicit RpcClient(RpcClientOptions options);
  ~RpcClient();  // calls still in flight fail with RpcErrorCode::closed
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  /// The future holds the reply, or throws RpcError.
  std::future<Message> call(const std::string& service, Message request,
                            std::chrono::milliseconds timeout);

  /// Exactly one of reply/error is set.
  struct Result {
    std::optional<Message> reply;
    std::optional<RpcError> error;
  };
  /// The callback runs on the client's loop thread: keep it short; it may
  /// call call() again (that never blocks).
  void call(const std::string& service, Message request, std::chrono::milliseconds timeout,
            std::function<void(Result)> callback);

  bool connected() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Returns the reply; throwing sends an error reply (kRpcErrorHeader).
using RpcHandler = std::function<Message(const Delivery&)>;

struct RpcServerOptions {
  ConnectionOptions connection;
  std::size_t workers = 4;
  std::uint16_t prefetch = 64;
};

/// Competing consumers on the auto-delete queue rpc.<service>, bound to
/// sb.rpc with key <service>; replies go out on a connection of their own.
class RpcServer {
 public:
  explicit RpcServer(RpcServerOptions options);
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  void serve(const std::string& service, RpcHandler handler,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Requests dropped because their deadline had passed before they ran.
  std::uint64_t expired() const;

  static QueueSpec queue_for(const std::string& service);

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::broker

#pragma once
// Request/reply over sb.rpc with direct reply-to.
//
// A request is published mandatory to sb.rpc with routing key = service and
// expiration = its remaining deadline, so a request to a service with no
// queue fails at once (no_route) and one nobody picked up in time expires in
// the broker. The server checks the deadline again before running the
// handler: a request whose caller already timed out never runs. A reply
// arriving after its deadline is dropped and counted.
//
// The server replies on its consuming connection (no confirm: a reply's
// only destination is a caller that matches it by correlation id) and acks
// the request right after the reply: the worker that ran the handler does
// both itself when the loop thread is idle, otherwise the loop does at the
// end of its turn, batching acks.

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
  /// A uv_loop_t* to run on instead of a thread of its own (an edge event
  /// loop: requests published and replies answered on the loop that serves
  /// the caller, with no hop between threads). The client must then be
  /// created, called and destroyed on that loop's thread, and the loop kept
  /// running after the client is destroyed until its handles are closed.
  void* uv_loop = nullptr;
};

class RpcClient {
 public:
  explicit RpcClient(RpcClientOptions options);
  ~RpcClient();  // calls still in flight fail with RpcErrorCode::closed
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  /// The future holds the reply, or throws RpcError. The request's
  /// x-sb-deadline is set to when the call times out, unless the request
  /// already carries an earlier one (a caller that leaves itself a margin
  /// after the server's deadline, like the edge for commands).
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

/// Answers one request of an AsyncRpcHandler, from any thread, at any time.
/// A small handle: copies share the request, and the first reply() or fail()
/// on any copy answers it; later calls are ignored (they return false, are
/// logged and counted in sb_broker_rpc_extra_replies_total). When the last
/// copy goes without an answer, the caller gets an error reply ("handler
/// dropped the request") instead of waiting for its deadline.
///
/// The request is acked when it is answered, not when the handler returns:
/// requests in flight (handed to the handler, not yet answered) are bounded
/// by the server's prefetch, and a server that dies with unanswered requests
/// leaves them to another instance. An answer after the caller's deadline is
/// still sent (the caller drops and counts it); one given after the server
/// was destroyed is dropped (the broker has put the request back).
class RpcResponder {
 public:
  class State;
  /// Used by RpcServer; a default-constructed responder answers nothing.
  explicit RpcResponder(std::shared_ptr<State> state = nullptr) : state_(std::move(state)) {}

  /// Sends `reply` (its correlation id and reply-to are set for you).
  bool reply(Message reply);
  /// Sends an error reply: the caller's RpcError has code remote, what() = message.
  bool fail(std::string message);
  /// True once this request has been answered (by any copy).
  bool answered() const;

 private:
  std::shared_ptr<State> state_;
};

/// Must not block: hand the work over (to a batching writer, say) and answer
/// through the responder later. Runs on a worker thread; throwing before
/// answering sends an error reply.
using AsyncRpcHandler = std::function<void(const Delivery&, RpcResponder)>;

struct RpcServerOptions {
  ConnectionOptions connection;
  /// Threads that run handlers.
  std::size_t workers = 4;
  /// Requests per service handed over and not yet answered.
  std::uint16_t prefetch = 64;
};

/// Competing consumers on the auto-delete queue rpc.<service>, bound to
/// sb.rpc with key <service>; one connection for requests and replies.
class RpcServer {
 public:
  explicit RpcServer(RpcServerOptions options);
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  /// Runs `handler` on a worker thread per request, up to `workers` at once.
  void serve(const std::string& service, RpcHandler handler,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// For handlers that answer later (group commit): the handler only holds
  /// a worker thread while it runs, and up to `prefetch` requests per
  /// service wait for their answer.
  void serve_async(const std::string& service, AsyncRpcHandler handler,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Requests dropped because their deadline had passed before they ran.
  std::uint64_t expired() const;

  static QueueSpec queue_for(const std::string& service);

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::broker

#pragma once
// The edge's HTTP/1.1 server: a few libuv event loops, each with its own
// SO_REUSEPORT listener, each serving many keep-alive connections. A thread
// never waits on one client: a request is parsed on its loop, handed to the
// handler there, and answered whenever the handler calls Reply::send — from
// the loop (a response at once) or from any other thread (an RPC reply, a
// worker that finished). Private to edge_lib (it names libuv types).
//
// What it guarantees:
// - requests on one connection are answered in order (one at a time: the
//   next request is read once the previous one is answered);
// - every limit is explicit and answered with the platform's error body
//   (413 body_too_large, 431 headers_too_large, 400 invalid_request, 503
//   overloaded when connections are over max_connections), then the
//   connection is closed when its framing can no longer be trusted;
// - `Expect: 100-continue` gets "100 Continue" before the body is read;
// - a request body may be sent with Content-Length or chunked;
// - idle keep-alive connections close after keep_alive; a request that
//   does not arrive whole within read_timeout closes its connection; a
//   response that cannot be written within write_timeout closes it;
// - a streamed response (HttpResponse::stream) runs its producer on its own
//   thread (at most max_streams at once, beyond that 503), written chunked,
//   with at most stream_buffer_bytes queued per connection (the producer's
//   write blocks while over it, and returns false once the client is gone).

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "switchboard/edge/http.hpp"

namespace sb::edge {

struct LoopServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (all loops share the one picked)
  int loops = 2;
  std::size_t max_connections = 10000;  // open at once, all loops together
  std::size_t max_header_bytes = 16384;
  std::size_t max_headers = 100;
  /// Bodies above this are answered 413 and the connection closed (the
  /// gateway applies its own, lower limit to what is read).
  std::size_t max_body_bytes = 2 * 1024 * 1024;
  std::chrono::milliseconds keep_alive{30000};
  std::chrono::milliseconds read_timeout{10000};
  std::chrono::milliseconds write_timeout{10000};
  std::size_t max_streams = 256;
  std::size_t stream_buffer_bytes = 256 * 1024;
  /// Run on each loop's own thread: once it runs, before it accepts; and
  /// when it stops, after its connections are closed and before its own
  /// handles are (per-loop state made in on_loop_start is destroyed here).
  std::function<void(std::size_t index, uv_loop_t* loop)> on_loop_start;
  std::function<void(std::size_t index)> on_loop_stop;
};

class LoopServer;

/// Answers one request, exactly once. Copies share the request; send() on
/// any thread. A second send() is ignored (returns false). If every copy is
/// dropped unanswered, the client gets 500 internal_error.
class Reply {
 public:
  struct State;
  explicit Reply(std::shared_ptr<State> state = nullptr) : state_(std::move(state)) {}
  bool send(HttpResponse response) const;
  /// The loop that read the request (for work that must run on it).
  uv_loop_t* loop() const noexcept;

 private:
  std::shared_ptr<State> state_;
};

/// Called on the request's loop thread; must not block (hand blocking work
/// to another thread and send from there).
using LoopHandler = std::function<void(HttpRequest request, Reply reply)>;

class LoopServer {
 public:
  LoopServer(LoopServerOptions options, LoopHandler handler);
  ~LoopServer();  // stop()
  LoopServer(const LoopServer&) = delete;
  LoopServer& operator=(const LoopServer&) = delete;

  /// Binds (throws std::runtime_error with the reason when it cannot),
  /// starts the loop threads, returns the port.
  int start();
  /// Stops accepting, answers requests in flight until `deadline` (then
  /// closes them), ends streams (their write returns false), joins threads.
  void stop(std::chrono::steady_clock::time_point deadline);

  /// Runs `fn` on loop `index % loops` (from any thread). False once stopped.
  bool post(std::size_t index, std::function<void()> fn);
  std::size_t loops() const noexcept;
  std::size_t connections() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::edge

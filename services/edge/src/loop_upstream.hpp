#pragma once
// Non-blocking HTTP/1.1 calls to upstream instances on one libuv loop: the
// asynchronous twin of Upstreams::call for the edge's event loops. One
// LoopUpstream per loop thread, used only on that thread. Keep-alive
// connections are pooled per base URL (at most max_idle_per_instance idle,
// none reused after max_idle); every call has a deadline; health is
// reported to the shared Upstreams (ejection, docs/protocol.md 9.4).
// Private to edge_lib (it names libuv types).

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "switchboard/edge/http.hpp"
#include "switchboard/edge/upstream.hpp"

namespace sb::edge {

class LoopUpstream {
 public:
  /// `health` records failures/successes per instance (shared by all loops).
  LoopUpstream(uv_loop_t* loop, UpstreamOptions options, std::shared_ptr<Upstreams> health);
  ~LoopUpstream();  // closes every connection; calls in flight are answered failed
  LoopUpstream(const LoopUpstream&) = delete;
  LoopUpstream& operator=(const LoopUpstream&) = delete;

  /// Sends `request` (method, path+query, headers, body — already shaped for
  /// the instance) to `base_url` ("http://host:port"). `done` runs once, on
  /// the loop thread, possibly before call() returns (immediate failure).
  /// Same outcomes as Upstreams::call: response (any status), unreachable
  /// (nothing sent: connect refused/failed), failed (sent, then the
  /// connection failed or the deadline passed). A reused connection found
  /// closed is retried once on a new one (a request that may have been read
  /// only when idempotent), counted as stale, not as a failure.
  void call(const std::string& instance_id, const std::string& base_url, HttpRequest request,
            std::chrono::steady_clock::time_point deadline,
            std::function<void(UpstreamResult)> done);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::edge

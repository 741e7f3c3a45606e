#pragma once
// HTTP upstream instances (docs/protocol.md 9.4): pooled keep-alive
// connections per instance, a deadline on every call, and passive health —
// an instance that fails three calls in a row (refused connection, timeout,
// 502/503/504) is ejected for a while (doubling while it keeps failing), so
// the router prefers the others; when all are ejected the router tries them
// anyway rather than refusing every call.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "switchboard/edge/http.hpp"

namespace sb::edge {

struct UpstreamOptions {
  /// Idle keep-alive connections kept per instance (more may be open while
  /// busy; the edge's own concurrency limit bounds them).
  std::size_t max_idle_per_instance = 64;
  /// A pooled connection idle longer than this is not reused (keep it below
  /// the upstreams' own keep-alive timeout; cpp-httplib's is 5 s).
  std::chrono::milliseconds max_idle{2000};
  std::chrono::milliseconds connect_timeout{1000};
  /// Consecutive failures (any success resets) before an instance is ejected.
  int eject_after = 3;
  std::chrono::milliseconds eject_base{5000};
  std::chrono::milliseconds eject_max{60000};
};

struct UpstreamResult {
  enum class Kind {
    response,     // the instance answered (any status)
    unreachable,  // nothing was sent: connection refused/failed
    failed,       // sent, then the connection failed or the deadline passed
  };
  Kind kind = Kind::unreachable;
  HttpResponse response;
  std::string error;
};

/// GET, HEAD, PUT, DELETE, OPTIONS: a request an upstream may have read
/// that can be sent again on a new connection.
bool idempotent_method(std::string_view method);

class Upstreams {
 public:
  explicit Upstreams(UpstreamOptions options);
  ~Upstreams();
  Upstreams(const Upstreams&) = delete;
  Upstreams& operator=(const Upstreams&) = delete;

  /// Sends `request` (method, path+query, headers, body — already shaped for
  /// the instance) to `base_url`; `instance_id` keys the health state.
  UpstreamResult call(const std::string& instance_id, const std::string& base_url,
                      const HttpRequest& request, std::chrono::steady_clock::time_point deadline);

  /// Whether the instance is not ejected now.
  bool healthy(const std::string& instance_id) const;
  /// Passive health, for callers that make their own calls (LoopUpstream):
  /// a failed call (refused, timed out, 502/503/504) or any other answer.
  void record_failure(const std::string& instance_id);
  void record_success(const std::string& instance_id);
  /// Counts a pooled connection found closed on use.
  void record_stale();
  const UpstreamOptions& options() const noexcept;
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::edge

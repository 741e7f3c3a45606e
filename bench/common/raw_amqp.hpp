#pragma once
// Plain rabbitmq-c baselines for benchmarks: what our libraries are compared
// against in the same run. Deliberately minimal and blocking.

#include <amqp.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sb::bench {

/// One plain rabbitmq-c connection with channel 1 open (in confirm mode when
/// asked). Throws on any failure.
struct RawConnection {
  amqp_connection_state_t c = nullptr;
  RawConnection(const std::string& url, bool confirms);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  /// Throws unless `r` is a normal reply.
  static void check(amqp_rpc_reply_t r, const char* what);
};

/// Adds properties to message `index` beyond content type and persistence
/// (what it points to must stay valid until the next call).
using RawProperties = std::function<void(std::size_t index, amqp_basic_properties_t& props)>;

/// Publishes `bodies` persistently to `exchange`/`routing_keys[i]` with
/// publisher confirms and at most `window` unconfirmed; returns once every
/// message is confirmed. Throws on any failure.
void raw_publish_confirmed(const std::string& url, const std::string& exchange,
                           const std::vector<std::string>& routing_keys,
                           const std::vector<std::string>& bodies, std::size_t window,
                           const RawProperties& properties = {});

/// Declares a durable queue bound to `exchange` with `key` (and purges it).
void raw_bind_queue(const std::string& url, const std::string& queue, const std::string& exchange,
                    const std::string& key);
void raw_purge_queue(const std::string& url, const std::string& queue);

/// Percentile (0..100) of unsorted samples.
double percentile(std::vector<double> samples, double p);

}  // namespace sb::bench

#pragma once
// One AMQP connection with channel 1, run by a libuv loop on its own thread,
// plus a connector thread that opens connections with deadlines and watches
// the loop for writes stuck on a wedged broker. Publisher, Consumer and
// RpcClient derive from it and implement the loop-thread hooks.

#include "amqp_codec.hpp"
#include "switchboard/broker/message.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/topology.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/wakeup.hpp"

#include <amqp.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sb::broker::detail {

using Clock = std::chrono::steady_clock;

struct Metrics {
  explicit Metrics(const std::string& connection);
  sb::metrics::Counter& published;
  sb::metrics::Counter& confirmed;
  sb::metrics::Counter& failed;
  sb::metrics::Counter& returned;
  sb::metrics::Counter& consumed;
  sb::metrics::Counter& acked;
  sb::metrics::Counter& retried;
  sb::metrics::Counter& parked;
  sb::metrics::Counter& reconnects;
  sb::metrics::Counter& late_replies;
  sb::metrics::Counter& extra_replies;
  sb::metrics::Histogram& rpc_latency;
};

/// A delivered or returned message, fully copied out of rabbitmq-c memory.
struct Incoming {
  enum class Kind { deliver, returned };
  Kind kind = Kind::deliver;
  std::uint64_t delivery_tag = 0;
  bool redelivered = false;
  std::string consumer_tag;
  std::string exchange;
  std::string routing_key;
  std::uint16_t reply_code = 0;
  std::string reply_text;
  Message message;
  std::uint64_t body_size = 0;
  bool have_header = false;
};

struct OpResult {
  bool ok = false;
  bool connection_lost = false;  // the op may be retried on the next connection
  std::string error;
  std::uint16_t code = 0;  // the broker's reply code when it refused the op
};
using OpDone = std::function<void(const OpResult&)>;

class Session {
 public:
  /// With `event_loop`, the session runs on that libuv loop instead of a
  /// loop thread of its own: start(), stop() and the destructor must then be
  /// called on that loop's thread, and the loop must keep running after
  /// stop() until the session's handles are closed (they free themselves).
  Session(ConnectionOptions options, bool confirms, uv_loop_t* event_loop = nullptr);
  virtual ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Starts the threads; the first connect attempt begins at once.
  void start();
  /// Closes the connection and joins the threads. Idempotent. Must not be
  /// called from the loop thread (but must be, with an event loop given). Derived classes call it
  /// in their destructor, before their own members go.
  void stop();

  bool connected() const { return connected_.load(std::memory_order_acquire); }
  bool on_loop_thread() const {
    return std::this_thread::get_id() == loop_thread_id_.load(std::memory_order_relaxed);
  }
  const ConnectionOptions& options() const { return options_; }
  /// The user of the URL: what RabbitMQ validates the user_id property
  /// against. Empty when the URL does not parse (connecting then fails).
  const std::string& login_user() const { return login_user_; }
  Metrics& metrics() { return metrics_; }

  /// Runs fn on the loop thread. False once the session is stopping (fn dropped).
  bool post(std::function<void()> fn);
  /// Makes the loop call on_wake() soon. Safe from any thread, any time. On
  /// the loop thread it costs no syscall: on_wake() runs at the end of the
  /// current loop callback.
  void wake();

  /// Declares and remembers `topology`; blocks until the broker accepted it.
  void declare(const Topology& topology, std::chrono::milliseconds timeout);
  /// Remembers `topology` for every connection; only before start().
  void preset_topology(const Topology& topology) { desired_.merge(topology); }

 protected:
  // ---- loop thread only (or a thread holding io_mutex(), see below) ----
  amqp_connection_state_t conn() const { return conn_; }
  std::uint64_t generation() const { return generation_; }
  bool blocked() const { return blocked_; }
  /// Tears the connection down and schedules a reconnect. From a thread
  /// borrowing the connection it only records the reason: the loop thread
  /// tears down at its next callback.
  void fail_connection(const std::string& reason);

  /// Held by the loop thread for the whole of each of its callbacks. Another
  /// thread that gets it with try_lock (the loop is idle in epoll) may use the
  /// connection and the loop-thread state for a moment: it saves a hop to the
  /// loop and back (RPC replies from a worker). Only threads that may block
  /// on a socket write do this: never a caller with a deadline.
  std::mutex& io_mutex() { return io_mu_; }
  /// Under io_mutex(): connected, not blocked by the broker, no failure
  /// waiting for the loop.
  bool can_send() const { return conn_ != nullptr && !blocked_ && deferred_failure_.empty(); }
  /// Sends a method whose reply is `reply`; done runs when it arrives, when
  /// the broker rejects it (channel.close naming it) or on connection loss.
  bool send_op(amqp_method_number_t method, void* decoded, amqp_method_number_t reply, OpDone done);
  /// Reads and handles every frame rabbitmq-c has buffered. `read_socket`:
  /// also read the socket once (the poll said it is readable, or heartbeats
  /// are due); the poll is level-triggered, so data that arrives later wakes
  /// the loop again and no read ends in EAGAIN.
  void drain(bool read_socket);

  /// Marks a rabbitmq-c call that may block on a full socket, for the
  /// watchdog.
  class Blocking {
   public:
    explicit Blocking(Session& s) : s_(s) {
      if (s_.blocking_depth_++ == 0) {
        s_.blocking_since_ns_.store(Clock::now().time_since_epoch().count(),
                                    std::memory_order_relaxed);
      }
    }
    ~Blocking() {
      if (--s_.blocking_depth_ == 0) s_.blocking_since_ns_.store(0, std::memory_order_relaxed);
    }
    Blocking(const Blocking&) = delete;
    Blocking& operator=(const Blocking&) = delete;

   private:
    Session& s_;
  };

  virtual void on_wake() {}
  /// Runs at the end of every loop callback (socket, wake-up, timer) while
  /// connected or not: send what the callback produced, in batches.
  virtual void on_flush() {}
  virtual void on_connected() {}
  virtual void on_disconnected(const std::string& /*reason*/) {}
  virtual void on_incoming(Incoming&& /*in*/) {}
  virtual void on_confirm(std::uint64_t /*tag*/, bool /*multiple*/, bool /*ack*/) {}
  /// The broker closed the channel over a basic.publish (access refused, a
  /// user_id that is not ours, no such exchange): `reason` is its reply
  /// code and text. Runs just before on_disconnected().
  virtual void on_publish_refused(const std::string& /*reason*/) {}
  virtual void on_consumer_cancelled(const std::string& /*tag*/) {}
  virtual void on_tick(Clock::time_point /*now*/) {}
  /// The session is about to close the connection (conn() may be null):
  /// last chance to send settlements.
  virtual void on_closing() {}
  /// The session is closing: report every pending item.
  virtual void on_shutdown() {}

 private:
  struct Op {
    amqp_method_number_t method;
    amqp_method_number_t reply;
    OpDone done;
  };
  struct DeclareRequest;

  static void on_wake_cb(uv_poll_t* handle, int status, int events);
  static void on_timer_cb(uv_timer_t* handle);
  static void on_check_cb(uv_check_t* handle);
  static void on_poll_cb(uv_poll_t* handle, int status, int events);

  void run_loop();
  void connector_main();
  void request_connect(std::chrono::milliseconds delay);
  void adopt(amqp_connection_state_t conn);
  void shutdown_on_loop();
  void stop_poll();
  void handle_frame(const amqp_frame_t& frame);
  void handle_method(amqp_channel_t channel, const amqp_method_t& method);
  void complete_incoming();
  void before_callback();
  void after_callback();
  void start_declare(const std::shared_ptr<DeclareRequest>& request);
  void send_topology(const Topology& topology,
                     const std::function<void(const OpResult&, int)>& done);
  void forget(const Topology& topology, int item);
  /// A 403 on an active exchange.declare: this user may not configure the
  /// platform's exchanges. Declares them passively from now on (this session
  /// and every later one of the same user and vhost in this process) and
  /// returns true; the declaration is re-sent on the next connection.
  bool fall_back_to_passive(const Topology& topology, int item, const OpResult& result);
  void check_stall_locked();

  ConnectionOptions options_;
  bool confirms_;
  Metrics metrics_;
  std::string login_user_;
  std::string passive_key_;         // user@host:port/vhost
  bool passive_exchanges_ = false;  // loop thread
  bool quiet_reconnect_ = false;    // loop thread: the next failure is expected

  uv_loop_t loop_{};
  uv_loop_t* event_loop_ = nullptr;  // the loop the session runs on: &loop_ or the given one
  bool own_loop_ = true;
  // Wakes the loop from other threads (not uv_async_t: see wakeup.hpp).
  Wakeup wakeup_;
  // Heap handles, freed by their close callbacks (the given loop closes them
  // after the session is gone).
  uv_poll_t* wake_poll_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  uv_check_t* check_ =
      nullptr;  // given loop only: runs on_wake() after wake() from outside a callback
  uv_poll_t* poll_ = nullptr;
  std::thread loop_thread_;
  std::atomic<std::thread::id> loop_thread_id_{};
  std::mutex io_mu_;
  std::string deferred_failure_;  // io_mu_: from a thread borrowing the connection
  bool wake_pending_ = false;     // loop thread: wake() called on the loop thread
  std::uint64_t ticks_ = 0;       // loop thread
  bool started_ = false;
  bool stopped_ = false;

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;
  bool stopping_ = false;
  bool wake_closed_ = false;

  // Loop-thread state.
  amqp_connection_state_t conn_ = nullptr;
  std::uint64_t generation_ = 0;
  bool shut_down_ = false;
  bool blocked_ = false;
  Clock::time_point last_recv_{};
  Clock::time_point connected_at_{};
  std::optional<Incoming> incoming_;
  std::deque<Op> ops_;
  Topology desired_;
  std::vector<std::shared_ptr<DeclareRequest>> declares_;  // not yet done
  int blocking_depth_ = 0;
  std::atomic<bool> connected_{false};
  std::atomic<std::int64_t> blocking_since_ns_{0};

  // Connector state (conn_mu_).
  std::mutex conn_mu_;
  std::condition_variable conn_cv_;
  std::thread connector_;
  bool connector_stop_ = false;
  bool connect_wanted_ = false;
  Clock::time_point connect_at_{};
  int guarded_fd_ = -1;
  bool stall_reported_ = false;
};

}  // namespace sb::broker::detail

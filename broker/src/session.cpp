#include "session.hpp"

#include "switchboard/shared/log.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <future>
#include <set>

namespace sb::broker::detail {

namespace {

constexpr auto kTick = std::chrono::milliseconds(10);
// Bounded so that a flood of frames cannot starve timers; the rest is
// picked up on the next turn of the loop.
constexpr int kMaxFramesPerDrain = 2048;
constexpr std::uint64_t kTicksPerSocketRead = 10;

sb::metrics::Counter& counter(const std::string& name, const std::string& help,
                              const std::string& connection) {
  return sb::metrics::Registry::global().counter(name, help, {{"connection", connection}});
}

// Users (user@host:port/vhost) that may not configure exchanges: their
// sessions declare exchanges passively from the start, so only the first
// session of a process pays the refusal.
std::mutex g_passive_mu;
std::set<std::string>& passive_users() {
  static std::set<std::string> users;
  return users;
}

bool is_passive_user(const std::string& key) {
  std::lock_guard lk(g_passive_mu);
  return passive_users().count(key) != 0;
}

}  // namespace

Metrics::Metrics(const std::string& c)
    : published(counter("sb_broker_published_total", "Messages sent to the broker", c)),
      confirmed(counter("sb_broker_confirmed_total", "Publishes confirmed by the broker", c)),
      failed(counter("sb_broker_failed_total", "Publishes that failed (nack, deadline, close)", c)),
      returned(counter("sb_broker_returned_total", "Mandatory publishes returned unroutable", c)),
      consumed(counter("sb_broker_consumed_total", "Messages delivered to handlers", c)),
      acked(counter("sb_broker_acked_total", "Deliveries acknowledged", c)),
      retried(counter("sb_broker_retried_total", "Deliveries sent to a retry queue", c)),
      parked(counter("sb_broker_parked_total", "Deliveries parked after their last retry", c)),
      reconnects(counter("sb_broker_reconnects_total", "Connections re-established", c)),
      late_replies(
          counter("sb_broker_rpc_late_replies_total", "RPC replies dropped after deadline", c)),
      extra_replies(counter("sb_broker_rpc_extra_replies_total",
                            "RpcResponder calls ignored: the request was already answered", c)),
      rpc_latency(sb::metrics::Registry::global().histogram("sb_broker_rpc_latency_seconds",
                                                            "RPC round trip, successful calls",
                                                            {{"connection", c}})) {}

struct Session::DeclareRequest {
  Topology topology;
  std::promise<void> promise;
  bool done = false;
  std::size_t remaining = 0;
};

Session::Session(ConnectionOptions options, bool confirms, uv_loop_t* event_loop)
    : options_(std::move(options)),
      confirms_(confirms),
      metrics_(options_.name),
      event_loop_(event_loop != nullptr ? event_loop : &loop_),
      own_loop_(event_loop == nullptr) {
  try {
    const ParsedUrl url = parse_url(options_.url);
    login_user_ = url.user;
    passive_key_ = url.user + "@" + url.host + ":" + std::to_string(url.port) + "/" + url.vhost;
    passive_exchanges_ = is_passive_user(passive_key_);
  } catch (const std::exception&) {
    // Reported by every connect attempt.
  }
}

Session::~Session() {
  if (started_ && !stopped_) {
    sb::log::critical("broker session destroyed without stop()", {{"connection", options_.name}});
  }
}

namespace {

template <class Handle>
void close_owned(Handle*& h) {
  if (h == nullptr) return;
  h->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(h),
           [](uv_handle_t* x) { delete reinterpret_cast<Handle*>(x); });
  h = nullptr;
}

}  // namespace

void Session::start() {
  if (own_loop_) {
    if (uv_loop_init(&loop_) != 0) throw BrokerError("broker: uv_loop_init failed");
  } else {
    loop_thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  wake_poll_ = new uv_poll_t;
  uv_poll_init(event_loop_, wake_poll_, wakeup_.fd());
  wake_poll_->data = this;
  uv_poll_start(wake_poll_, UV_READABLE, &Session::on_wake_cb);
  timer_ = new uv_timer_t;
  uv_timer_init(event_loop_, timer_);
  timer_->data = this;
  uv_timer_start(timer_, &Session::on_timer_cb, static_cast<std::uint64_t>(kTick.count()),
                 static_cast<std::uint64_t>(kTick.count()));
  if (!own_loop_) {
    check_ = new uv_check_t;
    uv_check_init(event_loop_, check_);
    check_->data = this;
    uv_check_start(check_, &Session::on_check_cb);
  }
  started_ = true;
  if (own_loop_) loop_thread_ = std::thread([this] { run_loop(); });
  request_connect(std::chrono::milliseconds(0));
  connector_ = std::thread([this] { connector_main(); });
}

void Session::run_loop() {
  loop_thread_id_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  uv_run(&loop_, UV_RUN_DEFAULT);
}

void Session::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lk(conn_mu_);
    connector_stop_ = true;
  }
  conn_cv_.notify_all();
  if (connector_.joinable()) connector_.join();
  if (!own_loop_) {
    // On the given loop's thread: shut down here; what was posted (an
    // adopted connection) is run first so that nothing leaks.
    std::vector<std::function<void()>> fns;
    {
      std::lock_guard lk(post_mu_);
      stopping_ = true;
      fns.swap(posted_);
    }
    std::lock_guard io(io_mu_);
    shut_down_ = true;
    for (auto& fn : fns) fn();
    shutdown_on_loop();
    return;
  }
  {
    std::lock_guard lk(post_mu_);
    posted_.push_back([this] { shutdown_on_loop(); });
    stopping_ = true;
    wakeup_.signal();
  }
  if (loop_thread_.joinable()) loop_thread_.join();
  uv_loop_close(&loop_);
}

bool Session::post(std::function<void()> fn) {
  std::lock_guard lk(post_mu_);
  if (stopping_) return false;
  posted_.push_back(std::move(fn));
  wakeup_.signal();
  return true;
}

void Session::wake() {
  if (on_loop_thread()) {
    wake_pending_ = true;  // after_callback() runs on_wake(): no eventfd round trip
    return;
  }
  std::lock_guard lk(post_mu_);
  if (!wake_closed_) wakeup_.signal();
}

void Session::before_callback() {
  if (deferred_failure_.empty()) return;
  std::string reason;
  reason.swap(deferred_failure_);
  fail_connection(reason);
}

void Session::after_callback() {
  if (shut_down_) return;
  if (wake_pending_) {
    wake_pending_ = false;
    on_wake();
  }
  on_flush();
  if (wake_pending_ && !shut_down_) {
    // Woken again by on_wake()/on_flush(): come back on the next turn rather
    // than loop here (a callback that keeps re-publishing must not starve
    // the socket and the timers).
    wake_pending_ = false;
    std::lock_guard lk(post_mu_);
    if (!wake_closed_) wakeup_.signal();
  }
}

void Session::on_wake_cb(uv_poll_t* handle, int, int) {
  auto* self = static_cast<Session*>(handle->data);
  self->wakeup_.clear();  // before taking the posted work: later posts signal again
  std::lock_guard io(self->io_mu_);
  self->before_callback();
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard lk(self->post_mu_);
    fns.swap(self->posted_);
  }
  for (auto& fn : fns) fn();
  if (self->shut_down_) return;
  self->wake_pending_ = false;
  self->on_wake();
  // Socket data wakes the uv_poll; only frames already buffered (left by a
  // capped drain, or pulled in by a synchronous call) are drained here.
  self->drain(false);
  self->after_callback();
}

void Session::on_check_cb(uv_check_t* handle) {
  auto* self = static_cast<Session*>(handle->data);
  if (self == nullptr || !self->wake_pending_ || self->shut_down_) return;
  std::lock_guard io(self->io_mu_);
  self->before_callback();
  self->after_callback();  // runs on_wake()
}

void Session::on_timer_cb(uv_timer_t* handle) {
  auto* self = static_cast<Session*>(handle->data);
  std::lock_guard io(self->io_mu_);
  self->before_callback();
  const auto now = Clock::now();
  if (self->conn_ != nullptr && self->options_.heartbeat.count() > 0 &&
      now - self->last_recv_ > 2 * self->options_.heartbeat) {
    self->fail_connection("missed heartbeats: nothing received for " +
                          std::to_string(2 * self->options_.heartbeat.count()) + " s");
  }
  // Reading the socket is what sends our heartbeat when one is due (inside
  // rabbitmq-c); every 100 ms is plenty for heartbeats of a second or more,
  // and spares the other ticks a recv + poll that only find EAGAIN.
  self->drain(++self->ticks_ % kTicksPerSocketRead == 0);
  self->on_tick(now);
  self->after_callback();
}

void Session::on_poll_cb(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<Session*>(handle->data);
  if (self == nullptr || handle != self->poll_) return;
  std::lock_guard io(self->io_mu_);
  self->before_callback();
  if (self->poll_ != handle) {
    // The deferred failure closed it.
  } else if (status < 0) {
    self->fail_connection(std::string("socket poll: ") + uv_strerror(status));
  } else {
    self->last_recv_ = Clock::now();
    self->drain(true);
  }
  self->after_callback();
}

void Session::request_connect(std::chrono::milliseconds delay) {
  {
    std::lock_guard lk(conn_mu_);
    connect_wanted_ = true;
    connect_at_ = Clock::now() + delay;
  }
  conn_cv_.notify_all();
}

void Session::connector_main() {
  std::unique_lock lk(conn_mu_);
  auto backoff = options_.reconnect_min;
  int failures = 0;
  while (!connector_stop_) {
    const auto now = Clock::now();
    if (connect_wanted_ && now >= connect_at_) {
      lk.unlock();
      std::string error;
      amqp_connection_state_t c = open_connection(options_, confirms_, &error);
      lk.lock();
      if (c != nullptr) {
        connect_wanted_ = false;
        backoff = options_.reconnect_min;
        failures = 0;
        lk.unlock();
        if (connector_stop_ || !post([this, c] { adopt(c); })) amqp_destroy_connection(c);
        lk.lock();
      } else {
        ++failures;
        // Every attempt is logged at first, then one in ten: a broker that is
        // down for minutes must not flood the log.
        if (failures <= 3 || failures % 10 == 0) {
          sb::log::warn("broker connect failed", {{"connection", options_.name},
                                                  {"error", error},
                                                  {"attempt", failures},
                                                  {"retry_in_ms", backoff.count()}});
        }
        connect_at_ = Clock::now() + backoff;
        backoff = std::min(backoff * 2, options_.reconnect_max);
      }
      continue;
    }
    check_stall_locked();
    auto wake_at = now + std::chrono::milliseconds(100);
    if (connect_wanted_) wake_at = std::min(wake_at, connect_at_);
    conn_cv_.wait_until(lk, wake_at);
  }
}

void Session::check_stall_locked() {
  const std::int64_t since = blocking_since_ns_.load(std::memory_order_relaxed);
  if (since == 0 || guarded_fd_ < 0) {
    stall_reported_ = false;
    return;
  }
  const auto stalled = Clock::now() - Clock::time_point(Clock::duration(since));
  const auto limit = std::max<Clock::duration>(options_.heartbeat, std::chrono::seconds(1));
  if (stalled > limit && !stall_reported_) {
    stall_reported_ = true;
    sb::log::warn(
        "broker socket write stalled; shutting the socket down",
        {{"connection", options_.name},
         {"stalled_ms", std::chrono::duration_cast<std::chrono::milliseconds>(stalled).count()}});
    // The loop thread owns the fd; shutdown() (not close) makes its blocked
    // call fail without racing the fd's lifetime (guarded by conn_mu_).
    ::shutdown(guarded_fd_, SHUT_RDWR);
  }
}

void Session::adopt(amqp_connection_state_t c) {
  if (shut_down_) {
    amqp_destroy_connection(c);
    return;
  }
  conn_ = c;
  const int fd = amqp_get_sockfd(c);
  poll_ = new uv_poll_t;
  if (uv_poll_init_socket(event_loop_, poll_, fd) != 0) {
    delete poll_;
    poll_ = nullptr;
    {
      std::lock_guard lk(conn_mu_);
      amqp_destroy_connection(conn_);
    }
    conn_ = nullptr;
    request_connect(options_.reconnect_min);
    return;
  }
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE, &Session::on_poll_cb);
  {
    std::lock_guard lk(conn_mu_);
    guarded_fd_ = fd;
  }
  ++generation_;
  if (generation_ > 1) metrics_.reconnects.inc();
  blocked_ = false;
  last_recv_ = connected_at_ = Clock::now();
  connected_.store(true, std::memory_order_release);
  sb::log::info("broker connected", {{"connection", options_.name}, {"generation", generation_}});

  // Remembered topology first: it must exist before anything is published
  // or consumed, and methods on one channel are handled in order.
  if (!desired_.empty()) {
    Topology copy = desired_;
    send_topology(copy, [this, copy](const OpResult& r, int item) {
      if (!r.ok && !r.connection_lost && !fall_back_to_passive(copy, item, r)) {
        sb::log::error("broker rejected a remembered declaration; forgetting it",
                       {{"connection", options_.name}, {"error", r.error}});
        forget(copy, item);
      }
    });
  }
  auto pending = declares_;
  for (auto& d : pending) start_declare(d);
  if (conn_ != nullptr) on_connected();
  drain(true);
}

void Session::fail_connection(const std::string& reason) {
  if (conn_ == nullptr) return;
  if (!on_loop_thread()) {
    // A thread borrowing the connection (io_mu_ held) must not touch libuv
    // handles: the loop tears down at its next callback, which this wakes.
    if (deferred_failure_.empty()) deferred_failure_ = reason;
    std::lock_guard lk(post_mu_);
    if (!wake_closed_) wakeup_.signal();
    return;
  }
  deferred_failure_.clear();  // this connection is going anyway
  if (quiet_reconnect_) {
    quiet_reconnect_ = false;
    sb::log::info("broker reconnecting", {{"connection", options_.name}, {"reason", reason}});
  } else {
    sb::log::warn("broker connection lost", {{"connection", options_.name}, {"reason", reason}});
  }
  amqp_connection_state_t c = conn_;
  conn_ = nullptr;
  connected_.store(false, std::memory_order_release);
  stop_poll();
  {
    std::lock_guard lk(conn_mu_);
    guarded_fd_ = -1;
    amqp_destroy_connection(c);
  }
  incoming_.reset();
  blocked_ = false;
  auto ops = std::move(ops_);
  ops_.clear();
  OpResult lost{false, true, "connection lost: " + reason};
  for (auto& op : ops) op.done(lost);
  on_disconnected(reason);
  if (!shut_down_) request_connect(options_.reconnect_min);
}

bool Session::send_op(amqp_method_number_t method, void* decoded, amqp_method_number_t reply,
                      OpDone done) {
  if (conn_ == nullptr) {
    done(OpResult{false, true, "not connected"});
    return false;
  }
  int rc;
  {
    Blocking b(*this);
    rc = amqp_send_method(conn_, 1, method, decoded);
  }
  if (rc != AMQP_STATUS_OK) {
    done(OpResult{false, true, "send: " + describe_status(rc)});
    fail_connection("send method: " + describe_status(rc));
    return false;
  }
  ops_.push_back(Op{method, reply, std::move(done)});
  return true;
}

void Session::send_topology(const Topology& t,
                            const std::function<void(const OpResult&, int)>& done) {
  // Items are numbered exchanges, then queues, then bindings.
  int item = 0;
  for (const auto& e : t.exchanges) {
    if (conn_ == nullptr) return;
    amqp_exchange_declare_t m{};
    m.exchange = bytes_of(e.name);
    m.type = amqp_cstring_bytes(exchange_type_name(e.type));
    m.durable = e.durable ? 1 : 0;
    m.auto_delete = e.auto_delete ? 1 : 0;
    m.internal = e.internal ? 1 : 0;
    // Passive: only checks that it exists, which needs no permission.
    m.passive = passive_exchanges_ ? 1 : 0;
    m.arguments = amqp_empty_table;
    const int n = item++;
    send_op(AMQP_EXCHANGE_DECLARE_METHOD, &m, AMQP_EXCHANGE_DECLARE_OK_METHOD,
            [done, n](const OpResult& r) { done(r, n); });
  }
  for (const auto& q : t.queues) {
    if (conn_ == nullptr) return;
    TableStorage args;
    queue_arguments(q, args);
    amqp_queue_declare_t m{};
    m.queue = bytes_of(q.name);
    m.durable = q.durable ? 1 : 0;
    m.exclusive = q.exclusive ? 1 : 0;
    m.auto_delete = q.auto_delete ? 1 : 0;
    m.arguments = args.table();
    const int n = item++;
    send_op(AMQP_QUEUE_DECLARE_METHOD, &m, AMQP_QUEUE_DECLARE_OK_METHOD,
            [done, n](const OpResult& r) { done(r, n); });
  }
  for (const auto& b : t.bindings) {
    if (conn_ == nullptr) return;
    amqp_queue_bind_t m{};
    m.queue = bytes_of(b.queue);
    m.exchange = bytes_of(b.exchange);
    m.routing_key = bytes_of(b.routing_key);
    m.arguments = amqp_empty_table;
    const int n = item++;
    send_op(AMQP_QUEUE_BIND_METHOD, &m, AMQP_QUEUE_BIND_OK_METHOD,
            [done, n](const OpResult& r) { done(r, n); });
  }
}

void Session::forget(const Topology& t, int item) {
  const auto ne = static_cast<int>(t.exchanges.size());
  const auto nq = static_cast<int>(t.queues.size());
  if (item < ne) {
    const auto& name = t.exchanges[static_cast<std::size_t>(item)].name;
    std::erase_if(desired_.exchanges, [&](const ExchangeSpec& e) { return e.name == name; });
  } else if (item < ne + nq) {
    const auto& name = t.queues[static_cast<std::size_t>(item - ne)].name;
    std::erase_if(desired_.queues, [&](const QueueSpec& q) { return q.name == name; });
  } else {
    const auto& b = t.bindings[static_cast<std::size_t>(item - ne - nq)];
    std::erase_if(desired_.bindings, [&](const BindingSpec& x) {
      return x.queue == b.queue && x.exchange == b.exchange && x.routing_key == b.routing_key;
    });
  }
}

bool Session::fall_back_to_passive(const Topology& t, int item, const OpResult& r) {
  if (r.code != AMQP_ACCESS_REFUSED || passive_exchanges_ || item < 0 ||
      item >= static_cast<int>(t.exchanges.size())) {
    return false;
  }
  passive_exchanges_ = true;
  quiet_reconnect_ = true;
  {
    std::lock_guard lk(g_passive_mu);
    passive_users().insert(passive_key_);
  }
  sb::log::info(
      "broker user may not configure exchanges; declaring them passively (they must "
      "exist: the store creates them)",
      {{"connection", options_.name},
       {"exchange", t.exchanges[static_cast<std::size_t>(item)].name},
       {"reason", r.error}});
  return true;
}

void Session::start_declare(const std::shared_ptr<DeclareRequest>& req) {
  req->remaining =
      req->topology.exchanges.size() + req->topology.queues.size() + req->topology.bindings.size();
  if (req->remaining == 0) {
    req->done = true;
    req->promise.set_value();
    std::erase(declares_, req);
    return;
  }
  send_topology(req->topology, [this, req](const OpResult& r, int item) {
    if (req->done || r.connection_lost) return;                         // re-sent after reconnect
    if (!r.ok && fall_back_to_passive(req->topology, item, r)) return;  // likewise
    if (r.ok) {
      if (--req->remaining == 0) {
        req->done = true;
        req->promise.set_value();
        std::erase(declares_, req);
      }
      return;
    }
    req->done = true;
    forget(req->topology, item);
    std::erase(declares_, req);
    req->promise.set_exception(std::make_exception_ptr(RejectedError("broker: " + r.error)));
  });
}

void Session::declare(const Topology& topology, std::chrono::milliseconds timeout) {
  if (on_loop_thread()) throw BrokerError("broker: declare() called on the loop thread");
  auto req = std::make_shared<DeclareRequest>();
  req->topology = topology;
  auto future = req->promise.get_future();
  if (!post([this, req] {
        desired_.merge(req->topology);
        declares_.push_back(req);
        if (conn_ != nullptr) start_declare(req);
      })) {
    throw ClosedError("broker: connection closed");
  }
  if (future.wait_for(timeout) != std::future_status::ready) {
    throw TimeoutError("broker: declare not confirmed within " + std::to_string(timeout.count()) +
                       " ms (it stays remembered and is retried on reconnect)");
  }
  future.get();
}

void Session::drain(bool read_socket) {
  if (conn_ == nullptr) return;
  timeval zero{0, 0};
  int frames = 0;
  while (conn_ != nullptr) {
    if (amqp_frames_enqueued(conn_) == 0 && amqp_data_in_buffer(conn_) == 0) {
      // Everything buffered is handled. Read the socket at most once per
      // call: a second read would only end in EAGAIN plus a poll() (two
      // syscalls per wake-up), and the level-triggered poll brings us back
      // for whatever arrives later.
      if (!read_socket) break;
      read_socket = false;
    }
    if (frames++ == kMaxFramesPerDrain) {
      // Come back for the rest after timers and other handles ran.
      std::lock_guard lk(post_mu_);
      if (!wake_closed_) wakeup_.signal();
      break;
    }
    amqp_frame_t frame;
    int rc;
    {
      Blocking b(*this);
      rc = amqp_simple_wait_frame_noblock(conn_, &frame, &zero);
    }
    if (rc == AMQP_STATUS_TIMEOUT) break;
    if (rc != AMQP_STATUS_OK) {
      fail_connection("read: " + describe_status(rc));
      return;
    }
    last_recv_ = Clock::now();
    handle_frame(frame);
  }
  if (conn_ != nullptr) amqp_maybe_release_buffers(conn_);
}

void Session::handle_frame(const amqp_frame_t& frame) {
  switch (frame.frame_type) {
    case AMQP_FRAME_METHOD:
      handle_method(frame.channel, frame.payload.method);
      return;
    case AMQP_FRAME_HEADER: {
      if (!incoming_ || incoming_->have_header) {
        fail_connection("protocol: unexpected content header");
        return;
      }
      const auto* props =
          static_cast<const amqp_basic_properties_t*>(frame.payload.properties.decoded);
      incoming_->message = decode_properties(*props);
      incoming_->body_size = frame.payload.properties.body_size;
      incoming_->have_header = true;
      incoming_->message.body.reserve(static_cast<std::size_t>(incoming_->body_size));
      if (incoming_->body_size == 0) complete_incoming();
      return;
    }
    case AMQP_FRAME_BODY: {
      if (!incoming_ || !incoming_->have_header) {
        fail_connection("protocol: unexpected content body");
        return;
      }
      const amqp_bytes_t& b = frame.payload.body_fragment;
      incoming_->message.body.append(static_cast<const char*>(b.bytes), b.len);
      if (incoming_->message.body.size() >= incoming_->body_size) complete_incoming();
      return;
    }
    default:
      return;
  }
}

void Session::complete_incoming() {
  Incoming in = std::move(*incoming_);
  incoming_.reset();
  on_incoming(std::move(in));
}

void Session::handle_method(amqp_channel_t channel, const amqp_method_t& method) {
  if (channel == 0) {
    switch (method.id) {
      case AMQP_CONNECTION_CLOSE_METHOD: {
        const auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
        const std::string reason = "connection closed by broker: " + std::to_string(m->reply_code) +
                                   " " + to_string(m->reply_text);
        amqp_connection_close_ok_t ok{};
        {
          Blocking b(*this);
          (void)amqp_send_method(conn_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        }
        fail_connection(reason);
        return;
      }
      case AMQP_CONNECTION_BLOCKED_METHOD: {
        const auto* m = static_cast<const amqp_connection_blocked_t*>(method.decoded);
        blocked_ = true;
        sb::log::warn("broker blocked publishing (flow control)",
                      {{"connection", options_.name}, {"reason", to_string(m->reason)}});
        return;
      }
      case AMQP_CONNECTION_UNBLOCKED_METHOD:
        blocked_ = false;
        sb::log::info("broker unblocked publishing", {{"connection", options_.name}});
        on_wake();
        return;
      default:
        return;
    }
  }
  switch (method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      const auto* m = static_cast<const amqp_basic_deliver_t*>(method.decoded);
      incoming_.emplace();
      incoming_->kind = Incoming::Kind::deliver;
      incoming_->delivery_tag = m->delivery_tag;
      incoming_->redelivered = m->redelivered != 0;
      incoming_->consumer_tag = to_string(m->consumer_tag);
      incoming_->exchange = to_string(m->exchange);
      incoming_->routing_key = to_string(m->routing_key);
      return;
    }
    case AMQP_BASIC_RETURN_METHOD: {
      const auto* m = static_cast<const amqp_basic_return_t*>(method.decoded);
      incoming_.emplace();
      incoming_->kind = Incoming::Kind::returned;
      incoming_->reply_code = m->reply_code;
      incoming_->reply_text = to_string(m->reply_text);
      incoming_->exchange = to_string(m->exchange);
      incoming_->routing_key = to_string(m->routing_key);
      return;
    }
    case AMQP_BASIC_ACK_METHOD: {
      const auto* m = static_cast<const amqp_basic_ack_t*>(method.decoded);
      on_confirm(m->delivery_tag, m->multiple != 0, true);
      return;
    }
    case AMQP_BASIC_NACK_METHOD: {
      const auto* m = static_cast<const amqp_basic_nack_t*>(method.decoded);
      on_confirm(m->delivery_tag, m->multiple != 0, false);
      return;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
      const auto* m = static_cast<const amqp_basic_cancel_t*>(method.decoded);
      on_consumer_cancelled(to_string(m->consumer_tag));
      return;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      const auto* m = static_cast<const amqp_channel_close_t*>(method.decoded);
      const std::string reason = std::to_string(m->reply_code) + " " + to_string(m->reply_text);
      const auto culprit = static_cast<amqp_method_number_t>(
          (static_cast<std::uint32_t>(m->class_id) << 16) | m->method_id);
      if (!ops_.empty() && ops_.front().method == culprit) {
        Op op = std::move(ops_.front());
        ops_.pop_front();
        op.done(OpResult{false, false, reason, m->reply_code});
      } else if (culprit == AMQP_BASIC_PUBLISH_METHOD) {
        on_publish_refused(reason);
      }
      amqp_channel_close_ok_t ok{};
      if (conn_ != nullptr) {
        Blocking b(*this);
        (void)amqp_send_method(conn_, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      }
      // One channel per connection: reconnecting is the simplest way to get
      // a clean channel with all remembered state re-established.
      fail_connection("channel closed by broker: " + reason);
      return;
    }
    default:
      break;
  }
  if (!ops_.empty() && ops_.front().reply == method.id) {
    Op op = std::move(ops_.front());
    ops_.pop_front();
    op.done(OpResult{true, false, {}});
    return;
  }
  sb::log::warn("broker sent an unexpected method",
                {{"connection", options_.name}, {"method", amqp_method_name(method.id)}});
}

// Stops watching the socket; the handle is freed once libuv has closed it.
void Session::stop_poll() {
  if (poll_ == nullptr) return;
  uv_poll_stop(poll_);
  poll_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(poll_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll_ = nullptr;
}

void Session::shutdown_on_loop() {
  shut_down_ = true;
  on_closing();
  if (conn_ != nullptr) {
    amqp_connection_state_t c = conn_;
    conn_ = nullptr;
    connected_.store(false, std::memory_order_release);
    stop_poll();
    close_connection(c);
  }
  auto ops = std::move(ops_);
  ops_.clear();
  for (auto& op : ops) op.done(OpResult{false, false, "connection closed"});
  for (auto& d : declares_) {
    if (!d->done) {
      d->done = true;
      d->promise.set_exception(std::make_exception_ptr(ClosedError("broker: connection closed")));
    }
  }
  declares_.clear();
  on_shutdown();
  {
    std::lock_guard lk(post_mu_);
    wake_closed_ = true;
  }
  uv_timer_stop(timer_);
  close_owned(timer_);
  uv_poll_stop(wake_poll_);
  close_owned(wake_poll_);
  if (check_ != nullptr) {
    uv_check_stop(check_);
    close_owned(check_);
  }
}

}  // namespace sb::broker::detail

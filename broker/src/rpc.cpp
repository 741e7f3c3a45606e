#include "switchboard/broker/rpc.hpp"

#include "consuming_session.hpp"
#include "session.hpp"
#include "switchboard/shared/log.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <unordered_map>

namespace sb::broker {

const char* to_string(RpcErrorCode code) {
  switch (code) {
    case RpcErrorCode::no_route:
      return "no_route";
    case RpcErrorCode::timeout:
      return "timeout";
    case RpcErrorCode::connection_lost:
      return "connection_lost";
    case RpcErrorCode::remote:
      return "remote";
    case RpcErrorCode::overloaded:
      return "overloaded";
    case RpcErrorCode::closed:
      return "closed";
  }
  return "unknown";
}

namespace {
constexpr const char* kReplyTo = "amq.rabbitmq.reply-to";
}  // namespace

class RpcClient::Impl final : public detail::Session {
 public:
  explicit Impl(RpcClientOptions options)
      : Session(options.connection, false, static_cast<uv_loop_t*>(options.uv_loop)),
        max_in_flight_(options.max_in_flight),
        prefix_(new_id().substr(0, 12) + ".") {
    builder_.set_user_id(login_user());
    preset_topology(platform_topology());
    start();
  }
  ~Impl() override { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  std::future<Message> call(const std::string& service, Message request,
                            std::chrono::milliseconds timeout) {
    auto promise = std::make_shared<std::promise<Message>>();
    auto future = promise->get_future();
    call(service, std::move(request), timeout, [promise](Result r) {
      if (r.reply) {
        promise->set_value(std::move(*r.reply));
      } else {
        promise->set_exception(std::make_exception_ptr(std::move(*r.error)));
      }
    });
    return future;
  }

  void call(const std::string& service, Message request, std::chrono::milliseconds timeout,
            std::function<void(Result)> callback) {
    auto c = std::make_unique<Call>();
    c->callback = std::move(callback);
    c->service = service;
    c->request = std::move(request);
    c->started = detail::Clock::now();
    c->deadline = c->started + timeout;
    if (in_flight_.fetch_add(1, std::memory_order_acq_rel) >= max_in_flight_) {
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
      deliver(*c, Result{std::nullopt,
                         RpcError(RpcErrorCode::overloaded, "rpc: too many calls in flight")});
      return;
    }
    {
      std::unique_lock lk(mu_);
      if (closed_) {
        in_flight_.fetch_sub(1, std::memory_order_acq_rel);
        lk.unlock();
        deliver(*c, Result{std::nullopt, RpcError(RpcErrorCode::closed, "rpc: client closed")});
        return;
      }
      c->correlation_id = prefix_ + std::to_string(++next_id_);
      inbox_.push_back(std::move(c));
    }
    wake();
  }

 private:
  struct Call {
    std::function<void(Result)> callback;
    std::string service;
    std::string correlation_id;
    Message request;
    detail::Clock::time_point started;
    detail::Clock::time_point deadline;
  };

  void deliver(Call& c, Result r) {
    try {
      c.callback(std::move(r));
    } catch (const std::exception& e) {
      sb::log::error("rpc callback threw", {{"connection", options().name}, {"error", e.what()}});
    } catch (...) {
      sb::log::error("rpc callback threw", {{"connection", options().name}});
    }
  }

  void finish(std::unique_ptr<Call> c, RpcErrorCode code, const std::string& why) {
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    deliver(*c, Result{std::nullopt, RpcError(code, "rpc " + c->service + ": " + why)});
  }

  void take_inbox() {
    std::vector<std::unique_ptr<Call>> batch;
    {
      std::lock_guard lk(mu_);
      batch.swap(inbox_);
    }
    for (auto& c : batch) waiting_.push_back(std::move(c));
  }

  void pump() {
    const auto now = detail::Clock::now();
    const auto now_sys = std::chrono::system_clock::now();
    while (!waiting_.empty() && conn() != nullptr && !blocked()) {
      auto& c = waiting_.front();
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(c->deadline - now);
      if (left.count() <= 0) {
        finish(std::move(c), RpcErrorCode::timeout, "deadline passed before the request was sent");
        waiting_.pop_front();
        continue;
      }
      Message& m = c->request;
      m.reply_to = kReplyTo;
      m.correlation_id = c->correlation_id;
      m.persistent = false;
      m.expiration = left;  // a request nobody took in time dies in the broker
      const auto wait_until = detail::epoch_ms(now_sys + left);
      const auto asked = m.header_int(kDeadlineHeader);
      // A caller may give the server less time than it waits itself.
      if (!asked || *asked > wait_until) m.headers[std::string(kDeadlineHeader)] = wait_until;
      const amqp_basic_properties_t& props = builder_.build(m);
      int rc;
      {
        Blocking b(*this);
        rc = amqp_basic_publish(conn(), 1, amqp_cstring_bytes(kRpcExchange),
                                detail::bytes_of(c->service), 1, 0, &props,
                                detail::bytes_of(m.body));
      }
      if (rc != AMQP_STATUS_OK) {
        fail_connection("publish request: " + detail::describe_status(rc));
        return;
      }
      deadlines_.emplace(c->deadline, c->correlation_id);
      std::string id = c->correlation_id;
      calls_.emplace(std::move(id), std::move(c));
      waiting_.pop_front();
    }
  }

  void on_wake() override {
    take_inbox();
    pump();
  }

  void on_connected() override {
    // Direct reply-to: consume the pseudo-queue, no-ack, on the channel that
    // publishes the requests.
    amqp_basic_consume_t m{};
    m.queue = amqp_cstring_bytes(kReplyTo);
    m.consumer_tag = amqp_cstring_bytes("sb.rpc.replies");
    m.no_ack = 1;
    m.arguments = amqp_empty_table;
    send_op(AMQP_BASIC_CONSUME_METHOD, &m, AMQP_BASIC_CONSUME_OK_METHOD,
            [this](const detail::OpResult& r) {
              if (!r.ok && !r.connection_lost) {
                sb::log::error("rpc: cannot consume replies",
                               {{"connection", options().name}, {"error", r.error}});
              }
            });
    pump();
  }

  void on_disconnected(const std::string& reason) override {
    // Replies to the old channel can never arrive.
    for (auto& [id, c] : calls_) {
      finish(std::move(c), RpcErrorCode::connection_lost, "connection lost: " + reason);
    }
    calls_.clear();
    deadlines_.clear();
  }

  void on_incoming(detail::Incoming&& in) override {
    auto it = calls_.find(in.message.correlation_id);
    if (it == calls_.end()) {
      if (in.kind == detail::Incoming::Kind::deliver) metrics().late_replies.inc();
      return;
    }
    std::unique_ptr<Call> c = std::move(it->second);
    calls_.erase(it);
    if (in.kind == detail::Incoming::Kind::returned) {
      finish(std::move(c), RpcErrorCode::no_route,
             "no live instance (" + std::to_string(in.reply_code) + " " + in.reply_text + ")");
      return;
    }
    const auto elapsed = detail::Clock::now() - c->started;
    if (const auto* err = in.message.header_string(kRpcErrorHeader)) {
      finish(std::move(c), RpcErrorCode::remote, *err);
      return;
    }
    metrics().rpc_latency.observe(std::chrono::duration<double>(elapsed).count());
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    deliver(*c, Result{std::move(in.message), std::nullopt});
  }

  void on_tick(detail::Clock::time_point now) override {
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto node = deadlines_.extract(deadlines_.begin());
      auto it = calls_.find(node.mapped());
      if (it == calls_.end()) continue;
      std::unique_ptr<Call> c = std::move(it->second);
      calls_.erase(it);
      finish(std::move(c), RpcErrorCode::timeout, "no reply within the deadline");
    }
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->deadline <= now) {
        finish(std::move(*it), RpcErrorCode::timeout,
               "deadline passed before the request was sent");
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void on_shutdown() override {
    {
      std::lock_guard lk(mu_);
      closed_ = true;
    }
    take_inbox();
    for (auto& [id, c] : calls_) finish(std::move(c), RpcErrorCode::closed, "client closed");
    calls_.clear();
    for (auto& c : waiting_) finish(std::move(c), RpcErrorCode::closed, "client closed");
    waiting_.clear();
  }

  const std::size_t max_in_flight_;
  const std::string prefix_;
  std::atomic<std::size_t> in_flight_{0};
  std::mutex mu_;
  bool closed_ = false;
  std::uint64_t next_id_ = 0;
  std::vector<std::unique_ptr<Call>> inbox_;
  // Loop thread.
  std::deque<std::unique_ptr<Call>> waiting_;
  std::unordered_map<std::string, std::unique_ptr<Call>> calls_;
  std::multimap<detail::Clock::time_point, std::string> deadlines_;
  detail::PropertiesBuilder builder_;
};

RpcClient::RpcClient(RpcClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(options))) {}
RpcClient::~RpcClient() = default;

std::future<Message> RpcClient::call(const std::string& service, Message request,
                                     std::chrono::milliseconds timeout) {
  return impl_->call(service, std::move(request), timeout);
}

void RpcClient::call(const std::string& service, Message request, std::chrono::milliseconds timeout,
                     std::function<void(Result)> callback) {
  impl_->call(service, std::move(request), timeout, std::move(callback));
}

bool RpcClient::connected() const {
  return impl_->connected();
}

// ---------------------------------------------------------------- server

namespace {

Message error_reply(std::string text) {
  Message m;
  m.body.clear();
  m.headers[std::string(kRpcErrorHeader)] = std::move(text);
  return m;
}

// The request's fields an answer needs, copied out of the Delivery so an
// async answer can come after the Delivery is gone.
struct RequestInfo {
  detail::DeliveryRef ref;
  std::string queue;
  std::string reply_to;
  std::string correlation_id;
  TraceContext trace;
};

RequestInfo request_info(const Delivery& d, detail::DeliveryRef ref) {
  return RequestInfo{ref, d.queue, d.message.reply_to, d.message.correlation_id,
                     trace_of(d.message)};
}

// Once the handler is done with the Delivery: no copies.
RequestInfo take_request_info(Delivery& d, detail::DeliveryRef ref) {
  TraceContext trace = trace_of(d.message);
  return RequestInfo{ref, std::move(d.queue), std::move(d.message.reply_to),
                     std::move(d.message.correlation_id), std::move(trace)};
}

// Publishes the reply, then acks the request: the worker does it itself
// when the loop thread is idle, otherwise the loop at the end of its turn.
void answer(detail::Outbox& outbox, const RequestInfo& r, Message reply) {
  if (r.reply_to.empty()) {
    sb::log::warn("rpc request without reply_to; reply dropped", {{"queue", r.queue}});
    outbox.push(detail::Settlement{r.ref, detail::Verdict::ack, {}});
    return;
  }
  reply.correlation_id = r.correlation_id;
  reply.persistent = false;
  if (trace_of(reply).traceparent.empty()) set_trace(reply, r.trace);
  if (!outbox.push(detail::Settlement{r.ref, detail::Verdict::ack,
                                      detail::Reply{r.reply_to, std::move(reply)}})) {
    sb::log::info("rpc server closed before the answer; the request goes back to its queue",
                  {{"queue", r.queue}});
  }
}

}  // namespace

class RpcResponder::State {
 public:
  State(std::shared_ptr<detail::Outbox> outbox, RequestInfo request, sb::metrics::Counter& extra)
      : outbox_(std::move(outbox)), request_(std::move(request)), extra_(extra) {}
  ~State() {
    if (answered_.exchange(true, std::memory_order_acq_rel)) return;
    sb::log::warn("async rpc handler dropped a request without answering",
                  {{"queue", request_.queue}});
    answer(*outbox_, request_, error_reply("handler dropped the request"));
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  bool complete(Message reply) {
    if (answered_.exchange(true, std::memory_order_acq_rel)) {
      extra_.inc();
      sb::log::warn("rpc request answered more than once; later answer ignored",
                    {{"queue", request_.queue}});
      return false;
    }
    answer(*outbox_, request_, std::move(reply));
    return true;
  }
  bool answered() const { return answered_.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<detail::Outbox> outbox_;
  RequestInfo request_;
  sb::metrics::Counter& extra_;
  std::atomic<bool> answered_{false};
};

bool RpcResponder::reply(Message reply) {
  if (!state_) {
    sb::log::error("RpcResponder::reply on an empty responder");
    return false;
  }
  return state_->complete(std::move(reply));
}

bool RpcResponder::fail(std::string message) {
  if (!state_) {
    sb::log::error("RpcResponder::fail on an empty responder");
    return false;
  }
  return state_->complete(error_reply(std::move(message)));
}

bool RpcResponder::answered() const {
  return state_ && state_->answered();
}

class RpcServer::Impl final : public detail::ConsumingSession {
 public:
  explicit Impl(RpcServerOptions options)
      : ConsumingSession(options.connection, options.workers), prefetch_(options.prefetch) {
    preset_topology(platform_topology());
    start();
  }

  ~Impl() override { close(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void serve(const std::string& service, RpcHandler handler, std::chrono::milliseconds timeout) {
    if (!handler) throw BrokerError("broker: serve() needs a handler");
    listen(
        service,
        [this, handler = std::move(handler)](Delivery& d, detail::DeliveryRef ref) {
          if (expired(d, ref)) return;
          Message reply;
          try {
            reply = handler(d);
          } catch (const std::exception& e) {
            reply = error_reply(e.what());
          } catch (...) {
            reply = error_reply("unknown exception");
          }
          answer(*outbox(), take_request_info(d, ref), std::move(reply));
        },
        timeout);
  }

  void serve_async(const std::string& service, AsyncRpcHandler handler,
                   std::chrono::milliseconds timeout) {
    if (!handler) throw BrokerError("broker: serve_async() needs a handler");
    listen(
        service,
        [this, handler = std::move(handler)](Delivery& d, detail::DeliveryRef ref) {
          if (expired(d, ref)) return;
          RpcResponder responder(std::make_shared<RpcResponder::State>(
              outbox(), request_info(d, ref), metrics().extra_replies));
          std::string error;
          try {
            handler(d, responder);
            return;
          } catch (const std::exception& e) {
            error = e.what();
          } catch (...) {
            error = "unknown exception";
          }
          if (responder.answered()) {
            sb::log::error("async rpc handler threw after answering",
                           {{"queue", d.queue}, {"error", error}});
            return;
          }
          responder.fail(error);
        },
        timeout);
  }

  std::uint64_t expired() const { return expired_.load(); }

 private:
  void listen(const std::string& service, Job job, std::chrono::milliseconds timeout) {
    const auto started = detail::Clock::now();
    const QueueSpec q = RpcServer::queue_for(service);
    Topology t;
    t.queues.push_back(q);
    t.bindings.push_back(BindingSpec{q.name, kRpcExchange, service});
    declare(t, timeout);
    const auto left = timeout - std::chrono::duration_cast<std::chrono::milliseconds>(
                                    detail::Clock::now() - started);
    subscribe(q.name, prefetch_, std::move(job), std::max(left, std::chrono::milliseconds(0)));
  }

  // Worker thread. True (and the request acked, unanswered) when the caller
  // has given up: running it now could act twice.
  bool expired(const Delivery& d, detail::DeliveryRef ref) {
    const auto deadline = d.message.header_int(kDeadlineHeader);
    if (!deadline || detail::now_epoch_ms() <= *deadline) return false;
    expired_.fetch_add(1);
    settle(ref, detail::Verdict::ack);
    return true;
  }

  const std::uint16_t prefetch_;
  std::atomic<std::uint64_t> expired_{0};
};

RpcServer::RpcServer(RpcServerOptions options)
    : impl_(std::make_shared<Impl>(std::move(options))) {}
RpcServer::~RpcServer() = default;

void RpcServer::serve(const std::string& service, RpcHandler handler,
                      std::chrono::milliseconds timeout) {
  impl_->serve(service, std::move(handler), timeout);
}

void RpcServer::serve_async(const std::string& service, AsyncRpcHandler handler,
                            std::chrono::milliseconds timeout) {
  impl_->serve_async(service, std::move(handler), timeout);
}

std::uint64_t RpcServer::expired() const {
  return impl_->expired();
}

QueueSpec RpcServer::queue_for(const std::string& service) {
  QueueSpec q;
  q.name = "rpc." + service;
  q.durable = false;
  q.auto_delete = true;
  return q;
}

}  // namespace sb::broker

#include "consuming_session.hpp"

#include "switchboard/shared/log.hpp"

namespace sb::broker::detail {

namespace {
// Deliveries are already bounded by the sum of prefetch counts; the pool's
// queue limit is a backstop (an overflowing delivery is requeued).
constexpr std::size_t kPoolCapacity = 65536;

// The session whose worker pool runs the current thread (a session outlives
// its workers, so the pointer is valid wherever it is set).
thread_local ConsumingSession* t_worker_of = nullptr;
}  // namespace

// ------------------------------------------------------------------ Outbox

bool Outbox::push(Settlement s) {
  if (s.reply && t_worker_of != nullptr) {
    ConsumingSession* session = nullptr;
    {
      std::lock_guard lk(mu_);
      session = session_;
    }
    if (session == t_worker_of && session->try_settle_here(s)) return true;
  }
  std::lock_guard lk(mu_);
  if (session_ == nullptr) return false;
  const bool was_empty = items_.empty();
  items_.push_back(std::move(s));
  // A non-empty outbox has a wake-up on its way already: the loop empties it
  // under this lock before handling it.
  if (was_empty) session_->wake();
  return true;
}

void Outbox::close() {
  std::lock_guard lk(mu_);
  session_ = nullptr;
  items_.clear();
}

void Outbox::take(std::vector<Settlement>& out) {
  std::lock_guard lk(mu_);
  out.swap(items_);
}

// -------------------------------------------------------------- AckTracker

void AckTracker::reset() {
  states_.clear();
  ready_.clear();
  base_ = 0;
  sequential_ = true;
}

void AckTracker::delivered(std::uint64_t tag) {
  if (!sequential_) return;
  if (states_.empty()) {
    base_ = tag;
  } else if (tag != base_ + states_.size()) {
    sb::log::warn("broker delivery tags out of sequence; acking one by one",
                  {{"expected", base_ + states_.size()}, {"got", tag}});
    sequential_ = false;
    // Whatever is ready now still goes out, one by one, in flush().
    states_.clear();
    return;
  }
  states_.push_back(kPending);
}

AckTracker::State* AckTracker::find(std::uint64_t tag) {
  if (!sequential_ || tag < base_ || tag - base_ >= states_.size()) return nullptr;
  return &states_[static_cast<std::size_t>(tag - base_)];
}

void AckTracker::ready(std::uint64_t tag) {
  if (!sequential_) {
    ready_.push_back(tag);
    return;
  }
  State* s = find(tag);
  if (s == nullptr || *s != kPending) return;  // unknown or settled already
  *s = kReady;
  ready_.push_back(tag);
}

void AckTracker::done(std::uint64_t tag) {
  if (State* s = find(tag)) *s = kDone;
}

std::size_t AckTracker::flush(const std::function<bool(std::uint64_t, bool)>& send) {
  if (ready_.empty()) return 0;
  std::vector<std::uint64_t> ready;
  ready.swap(ready_);
  if (!sequential_) {
    std::size_t n = 0;
    for (auto tag : ready) {
      if (!send(tag, false)) return n;
      ++n;
    }
    return n;
  }
  // The settled run at the front: one cumulative ack up to its last ready tag.
  std::size_t front = 0;
  std::uint64_t last = 0;
  while (!states_.empty() && states_.front() != kPending) {
    if (states_.front() == kReady) {
      last = base_;
      ++front;
    }
    states_.pop_front();
    ++base_;
  }
  if (front > 0 && !send(last, front > 1)) return 0;
  std::size_t n = front;
  // Behind a delivery still in its handler: one by one.
  for (auto tag : ready) {
    State* s = find(tag);
    if (s == nullptr || *s != kReady) continue;
    *s = kDone;
    if (!send(tag, false)) return n;  // the connection failed: reset() ran
    ++n;
  }
  return n;
}

// -------------------------------------------------------- ConsumingSession

ConsumingSession::ConsumingSession(ConnectionOptions options, std::size_t workers)
    : Session(std::move(options), false),
      outbox_(std::make_shared<Outbox>(*this)),
      pool_(workers, kPoolCapacity, [this](PoolJob& j) {
        t_worker_of = this;
        try {
          j.sub->job(j.delivery, j.ref);
        } catch (const std::exception& e) {
          // Jobs catch their handler's exceptions: this is a bug here.
          sb::log::error("broker consumer job threw; delivery requeued",
                         {{"queue", j.sub->queue}, {"error", e.what()}});
          settle(j.ref, Verdict::requeue);
        }
      }) {
  builder_.set_user_id(login_user());  // RPC replies carry our user
}

ConsumingSession::~ConsumingSession() {
  if (!closed_) {
    sb::log::critical("broker consuming session destroyed without close()",
                      {{"connection", options().name}});
    close();
  }
}

void ConsumingSession::close() {
  if (closed_) return;
  closed_ = true;
  pool_.stop();
  stop();  // on_closing() sends what the handlers settled
  outbox_->close();
}

void ConsumingSession::subscribe(const std::string& queue, std::uint16_t prefetch, Job job,
                                 std::chrono::milliseconds timeout) {
  if (!job) throw BrokerError("broker: subscribe needs a handler");
  if (prefetch == 0) throw BrokerError("broker: prefetch must be > 0");
  auto sub = std::make_shared<Subscription>();
  sub->queue = queue;
  sub->prefetch = prefetch;
  sub->job = std::move(job);
  auto ready = sub->ready.get_future();
  if (!post([this, sub] {
        sub->tag = "sb." + options().name + "." + std::to_string(++next_tag_);
        subs_[sub->tag] = sub;
        if (conn() != nullptr) send_subscription(sub);
      })) {
    throw ClosedError("broker: consumer closed");
  }
  if (ready.wait_for(timeout) != std::future_status::ready) {
    throw TimeoutError("broker: consume on '" + queue + "' not confirmed within " +
                       std::to_string(timeout.count()) +
                       " ms (it stays registered and starts when the broker answers)");
  }
  ready.get();
}

void ConsumingSession::send_subscription(const std::shared_ptr<Subscription>& sub) {
  amqp_basic_qos_t qos{};
  qos.prefetch_count = sub->prefetch;
  qos.global = 0;
  send_op(AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD, [](const OpResult&) {});
  amqp_basic_consume_t m{};
  m.queue = bytes_of(sub->queue);
  m.consumer_tag = bytes_of(sub->tag);
  m.no_ack = 0;
  m.arguments = amqp_empty_table;
  send_op(
      AMQP_BASIC_CONSUME_METHOD, &m, AMQP_BASIC_CONSUME_OK_METHOD, [this, sub](const OpResult& r) {
        if (r.ok) {
          if (!sub->ready_set) {
            sub->ready_set = true;
            sub->ready.set_value();
          }
          return;
        }
        if (r.connection_lost) return;  // subscribed again after reconnect
        sb::log::error("broker refused a consumer",
                       {{"connection", options().name}, {"queue", sub->queue}, {"error", r.error}});
        subs_.erase(sub->tag);
        if (!sub->ready_set) {
          sub->ready_set = true;
          sub->ready.set_exception(
              std::make_exception_ptr(RejectedError("broker: consume: " + r.error)));
        }
      });
}

void ConsumingSession::on_connected() {
  tracker_.reset();
  for (auto& [tag, sub] : subs_) {
    if (conn() == nullptr) return;
    send_subscription(sub);
  }
}

void ConsumingSession::on_disconnected(const std::string& /*reason*/) {
  // The broker requeues everything unacked: tags of this channel are void,
  // and deliveries not yet handed to a worker will come again.
  tracker_.reset();
  to_run_.clear();
}

void ConsumingSession::on_incoming(Incoming&& in) {
  if (in.kind != Incoming::Kind::deliver) return;
  tracker_.delivered(in.delivery_tag);
  auto it = subs_.find(in.consumer_tag);
  if (it == subs_.end()) {
    sb::log::warn("delivery for an unknown consumer; requeued",
                  {{"connection", options().name}, {"consumer_tag", in.consumer_tag}});
    settle_now(in.delivery_tag, Verdict::requeue);
    return;
  }
  metrics().consumed.inc();
  PoolJob& job = to_run_.emplace_back();
  job.sub = it->second;
  job.ref = DeliveryRef{generation(), in.delivery_tag};
  Delivery& d = job.delivery;
  d.queue = job.sub->queue;
  d.exchange = std::move(in.exchange);
  d.routing_key = std::move(in.routing_key);
  d.redelivered = in.redelivered;
  d.message = std::move(in.message);
  if (auto h = d.message.headers.find(kOriginalUserIdHeader); h != d.message.headers.end()) {
    const auto* original = std::get_if<std::string>(&h->second);
    if (original != nullptr && d.message.user_id == login_user()) d.message.user_id = *original;
    d.message.headers.erase(h);
  }
  const auto failures = d.message.header_int(kFailuresHeader).value_or(0);
  d.attempt = static_cast<std::uint32_t>(failures < 0 ? 1 : failures + 1);
}

void ConsumingSession::on_consumer_cancelled(const std::string& tag) {
  auto it = subs_.find(tag);
  const std::string queue = it == subs_.end() ? std::string("?") : it->second->queue;
  // The queue was deleted or failed over. Reconnecting re-declares it and
  // subscribes again.
  fail_connection("broker cancelled consumer on queue '" + queue + "'");
}

void ConsumingSession::settle_now(std::uint64_t tag, Verdict verdict) {
  if (conn() == nullptr) return;
  tracker_.done(tag);
  int rc;
  {
    Blocking b(*this);
    if (verdict == Verdict::ack) {
      rc = amqp_basic_ack(conn(), 1, tag, 0);
    } else {
      rc = amqp_basic_reject(conn(), 1, tag, verdict == Verdict::requeue ? 1 : 0);
    }
  }
  if (rc != AMQP_STATUS_OK) {
    fail_connection("settle: " + describe_status(rc));
    return;
  }
  if (verdict == Verdict::ack) metrics().acked.inc();
}

bool ConsumingSession::send_ack(std::uint64_t tag, bool multiple) {
  if (conn() == nullptr) return false;
  int rc;
  {
    Blocking b(*this);
    rc = amqp_basic_ack(conn(), 1, tag, multiple ? 1 : 0);
  }
  if (rc != AMQP_STATUS_OK) {
    fail_connection("ack: " + describe_status(rc));
    return false;
  }
  return true;
}

bool ConsumingSession::publish_reply(const Reply& r) {
  const amqp_basic_properties_t& props = builder_.build(r.message);
  int rc;
  {
    Blocking b(*this);
    rc = amqp_basic_publish(conn(), 1, amqp_empty_bytes, bytes_of(r.routing_key), 0, 0, &props,
                            bytes_of(r.message.body));
  }
  if (rc != AMQP_STATUS_OK) {
    fail_connection("publish reply: " + describe_status(rc));
    return false;
  }
  metrics().published.inc();
  return true;
}

void ConsumingSession::on_flush() {
  if (!to_run_.empty()) {
    const std::size_t taken = pool_.submit(to_run_);
    for (std::size_t i = taken; i < to_run_.size(); ++i) {
      sb::log::error("handler queue full; delivery requeued", {{"connection", options().name}});
      settle_now(to_run_[i].ref.tag, Verdict::requeue);
    }
    to_run_.clear();
  }

  outbox_->take(settlements_);
  if (settlements_.empty() && held_.empty()) return;
  // Replies keep their order: held ones (blocked, or no connection) first.
  while (!held_.empty() && can_send()) {
    if (!publish_reply(*held_.front().reply)) break;
    apply(held_.front());
    held_.pop_front();
  }
  for (auto& s : settlements_) {
    if (s.reply && (!held_.empty() || !can_send() || !publish_reply(*s.reply))) {
      held_.push_back(std::move(s));
      continue;
    }
    apply(s);
  }
  settlements_.clear();
  flush_acks();
}

void ConsumingSession::apply(const Settlement& s) {
  if (s.ref.generation != generation() || conn() == nullptr) return;
  if (s.verdict == Verdict::ack) {
    tracker_.ready(s.ref.tag);
  } else {
    settle_now(s.ref.tag, s.verdict);
  }
}

void ConsumingSession::flush_acks() {
  const std::size_t acked =
      tracker_.flush([this](std::uint64_t tag, bool multiple) { return send_ack(tag, multiple); });
  if (acked > 0) metrics().acked.inc(acked);
}

bool ConsumingSession::try_settle_here(Settlement& s) {
  // Never wait for the loop: if it is busy, it will see the outbox soon.
  std::unique_lock lk(io_mutex(), std::try_to_lock);
  if (!lk.owns_lock() || !held_.empty() || !can_send()) return false;
  if (s.reply && !publish_reply(*s.reply)) {
    // The loop tears the connection down (deferred); the reply goes out on
    // the next one.
    held_.push_back(std::move(s));
    return true;
  }
  apply(s);
  flush_acks();
  return true;
}

void ConsumingSession::on_closing() {
  // Handlers have finished (the pool is stopped): send what they settled.
  to_run_.clear();
  on_flush();
  if (!held_.empty()) {
    sb::log::warn("closing with RPC replies not sent (blocked or disconnected)",
                  {{"connection", options().name}, {"replies", held_.size()}});
    held_.clear();
  }
}

}  // namespace sb::broker::detail

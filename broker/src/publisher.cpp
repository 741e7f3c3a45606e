#include "switchboard/broker/publisher.hpp"

#include "session.hpp"
#include "switchboard/shared/log.hpp"

#include <deque>
#include <unordered_map>

namespace sb::broker {

const char* to_string(PublishStatus status) {
  switch (status) {
    case PublishStatus::confirmed:
      return "confirmed";
    case PublishStatus::returned:
      return "returned";
    case PublishStatus::failed:
      return "failed";
  }
  return "failed";
}

namespace {
// Identifies a mandatory message when the broker returns it: returns carry
// no delivery tag.
constexpr std::string_view kSeqHeader = "x-sb-publish-seq";
}  // namespace

class Publisher::Impl final : public detail::Session {
 public:
  explicit Impl(PublisherOptions options)
      : Session(options.connection, true), options_(std::move(options)) {
    if (options_.max_in_flight == 0) throw BrokerError("broker: max_in_flight must be > 0");
    builder_.set_user_id(login_user());
    preset_topology(options_.topology);
    start();
  }

  ~Impl() override { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  const PublisherOptions& publisher_options() const { return options_; }

  void publish(Message message, PublishOptions opts, Callback cb) {
    auto e = std::make_unique<Entry>();
    e->message = std::move(message);
    e->options = std::move(opts);
    e->callback = std::move(cb);
    {
      std::unique_lock lk(mu_);
      if (in_flight_ >= options_.max_in_flight && !closed_) {
        if (on_loop_thread()) {
          lk.unlock();
          fail_now(*e, "publish window full (publish() from a publish callback never waits)");
          return;
        }
        ++waiters_;
        auto room = [&] { return closed_ || in_flight_ < options_.max_in_flight; };
        bool ok = true;
        if (e->options.deadline) {
          ok = cv_.wait_until(lk, *e->options.deadline, room);
        } else {
          cv_.wait(lk, room);
        }
        --waiters_;
        if (!ok) {
          lk.unlock();
          fail_now(*e, "deadline passed while waiting for the publish window");
          return;
        }
      }
      if (closed_) {
        lk.unlock();
        fail_now(*e, "publisher closed");
        return;
      }
      ++in_flight_;
      e->seq = ++next_seq_;
      inbox_.push_back(std::move(e));
    }
    wake();
  }

  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    ++waiters_;
    const bool ok = cv_.wait_for(lk, timeout, [&] { return in_flight_ == 0; });
    --waiters_;
    return ok;
  }

  std::size_t in_flight() const {
    std::lock_guard lk(mu_);
    return in_flight_;
  }

 private:
  struct Entry {
    Message message;
    PublishOptions options;
    Callback callback;
    std::uint64_t seq = 0;
    bool reported = false;
    bool returned = false;
    std::string return_reason;
  };

  void fail_now(Entry& e, const std::string& reason) {
    metrics().failed.inc();
    invoke(e, PublishOutcome{PublishStatus::failed, reason});
  }

  void invoke(Entry& e, const PublishOutcome& outcome) {
    if (!e.callback) return;
    try {
      e.callback(outcome);
    } catch (const std::exception& ex) {
      sb::log::error("publish callback threw",
                     {{"connection", options().name}, {"error", ex.what()}});
    } catch (...) {
      sb::log::error("publish callback threw", {{"connection", options().name}});
    }
  }

  void report(Entry& e, PublishStatus status, std::string reason = {}) {
    if (e.reported) return;
    e.reported = true;
    switch (status) {
      case PublishStatus::confirmed:
        metrics().confirmed.inc();
        break;
      case PublishStatus::returned:
        metrics().returned.inc();
        break;
      case PublishStatus::failed:
        metrics().failed.inc();
        break;
    }
    invoke(e, PublishOutcome{status, std::move(reason)});
  }

  // Drops an entry that has its outcome; the window slot is given back in
  // release_window(), once per batch.
  void retire(std::unique_ptr<Entry> e) {
    if (e->options.mandatory) by_seq_.erase(e->seq);
    ++to_release_;
  }

  void release_window() {
    if (to_release_ == 0) return;
    {
      std::lock_guard lk(mu_);
      in_flight_ -= to_release_;
    }
    to_release_ = 0;
    cv_.notify_all();
  }

  void take_inbox() {
    std::vector<std::unique_ptr<Entry>> batch;
    {
      std::lock_guard lk(mu_);
      batch.swap(inbox_);
    }
    for (auto& e : batch) {
      if (e->options.deadline && *e->options.deadline < earliest_deadline_) {
        earliest_deadline_ = *e->options.deadline;
      }
      if (e->options.mandatory) by_seq_[e->seq] = e.get();
      waiting_.push_back(std::move(e));
    }
  }

  void pump() {
    const auto now = detail::Clock::now();
    suspects_ = std::min(suspects_, waiting_.size());
    while (!waiting_.empty() && conn() != nullptr && !blocked()) {
      // After a refusal, the messages that might have caused it go one at a
      // time: the one the broker refuses alone in flight is the culprit.
      if (suspects_ > 0 && !unconfirmed_.empty()) return;
      Entry& e = *waiting_.front();
      if (e.options.deadline && now >= *e.options.deadline) {
        report(e, PublishStatus::failed, "deadline passed before the message could be sent");
        retire(std::move(waiting_.front()));
        waiting_.pop_front();
        continue;
      }
      const amqp_basic_properties_t& props =
          e.options.mandatory
              ? builder_.build(e.message, kSeqHeader, static_cast<std::int64_t>(e.seq))
              : builder_.build(e.message);
      int rc;
      {
        Blocking b(*this);
        rc =
            amqp_basic_publish(conn(), 1, detail::bytes_of(e.options.exchange),
                               detail::bytes_of(e.options.routing_key), e.options.mandatory ? 1 : 0,
                               0, &props, detail::bytes_of(e.message.body));
      }
      if (rc != AMQP_STATUS_OK) {
        // The entry stays first in line: it is sent again after reconnect.
        fail_connection("publish: " + detail::describe_status(rc));
        return;
      }
      metrics().published.inc();
      unconfirmed_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
      if (suspects_ > 0) --suspects_;
    }
  }

  void on_wake() override {
    take_inbox();
    pump();
    release_window();
  }

  void on_connected() override {
    first_tag_ = 1;
    pump();
    release_window();
  }

  void on_publish_refused(const std::string& reason) override { refused_ = reason; }

  void on_disconnected(const std::string& reason) override {
    // A publish refused by the broker (403 access refused, 406 a user_id
    // not ours, 404 no exchange) would be refused again on every reconnect:
    // when it was alone in flight it fails now; otherwise the messages in
    // flight are re-sent one at a time until it is alone.
    std::string refused;
    refused.swap(refused_);
    bool probe = false;
    if (!refused.empty()) {
      Entry* culprit = nullptr;
      std::size_t candidates = 0;
      for (auto& e : unconfirmed_) {
        if (e && !e->returned) {
          ++candidates;
          culprit = e.get();
        }
      }
      if (candidates == 1) {
        report(*culprit, PublishStatus::failed, "refused by the broker: " + refused);
      } else {
        probe = candidates > 1;
      }
    }
    // Unconfirmed messages go back to the head of the line, in order, to be
    // sent again; those with an outcome already are dropped here.
    std::deque<std::unique_ptr<Entry>> resend;
    for (auto& e : unconfirmed_) {
      if (!e) continue;
      if (e->reported) {
        retire(std::move(e));
      } else if (e->returned) {
        report(*e, PublishStatus::returned, e->return_reason);
        retire(std::move(e));
      } else {
        resend.push_back(std::move(e));
      }
    }
    unconfirmed_.clear();
    first_tag_ = 1;
    if (!resend.empty()) {
      sb::log::info("re-sending unconfirmed messages after connection loss",
                    {{"connection", options().name}, {"count", resend.size()}, {"reason", reason}});
    }
    if (probe) {
      suspects_ = resend.size();
    } else if (suspects_ > 0) {
      suspects_ += resend.size();  // the one being probed goes back first
    }
    while (!resend.empty()) {
      waiting_.push_front(std::move(resend.back()));
      resend.pop_back();
    }
    release_window();
  }

  void complete(std::size_t index, bool ack) {
    std::unique_ptr<Entry> e = std::move(unconfirmed_[index]);
    if (!e) return;
    if (!ack) {
      report(*e, PublishStatus::failed, "nacked by the broker");
    } else if (e->returned) {
      report(*e, PublishStatus::returned, e->return_reason);
    } else {
      report(*e, PublishStatus::confirmed);
    }
    retire(std::move(e));
  }

  void on_confirm(std::uint64_t tag, bool multiple, bool ack) override {
    if (tag < first_tag_ || tag - first_tag_ >= unconfirmed_.size()) {
      sb::log::warn("confirm for an unknown delivery tag",
                    {{"connection", options().name}, {"tag", tag}});
      return;
    }
    const std::size_t last = static_cast<std::size_t>(tag - first_tag_);
    if (multiple) {
      for (std::size_t i = 0; i <= last; ++i) complete(i, ack);
    } else {
      complete(last, ack);
    }
    while (!unconfirmed_.empty() && !unconfirmed_.front()) {
      unconfirmed_.pop_front();
      ++first_tag_;
    }
    if (suspects_ > 0 && unconfirmed_.empty()) wake();  // the next suspect
    release_window();
  }

  void on_incoming(detail::Incoming&& in) override {
    if (in.kind != detail::Incoming::Kind::returned) return;
    const auto seq = in.message.header_int(kSeqHeader);
    auto it = seq ? by_seq_.find(static_cast<std::uint64_t>(*seq)) : by_seq_.end();
    if (it == by_seq_.end()) {
      sb::log::warn("returned message matches no publish", {{"connection", options().name}});
      return;
    }
    it->second->returned = true;
    it->second->return_reason = "unroutable: " + std::to_string(in.reply_code) + " " +
                                in.reply_text + " (exchange '" + in.exchange + "', key '" +
                                in.routing_key + "')";
  }

  void on_tick(detail::Clock::time_point now) override {
    if (now < earliest_deadline_) return;
    auto earliest = detail::Clock::time_point::max();
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      Entry& e = **it;
      if (e.options.deadline && now >= *e.options.deadline) {
        report(e, PublishStatus::failed, "deadline passed before the message could be sent");
        retire(std::move(*it));
        it = waiting_.erase(it);
        continue;
      }
      if (e.options.deadline) earliest = std::min(earliest, *e.options.deadline);
      ++it;
    }
    for (auto& p : unconfirmed_) {
      if (!p || p->reported || !p->options.deadline) continue;
      if (now >= *p->options.deadline) {
        // Kept until its confirm (or the connection) goes, so the window
        // stays bounded by what the broker really holds.
        report(*p, PublishStatus::failed,
               "deadline passed before the broker confirmed (the message may still arrive)");
      } else {
        earliest = std::min(earliest, *p->options.deadline);
      }
    }
    earliest_deadline_ = earliest;
    release_window();
  }

  void on_shutdown() override {
    {
      std::lock_guard lk(mu_);
      closed_ = true;
    }
    take_inbox();
    for (auto& e : unconfirmed_) {
      if (!e) continue;
      report(*e, PublishStatus::failed, "publisher closed before the broker confirmed");
      retire(std::move(e));
    }
    unconfirmed_.clear();
    for (auto& e : waiting_) {
      report(*e, PublishStatus::failed, "publisher closed before the message was sent");
      retire(std::move(e));
    }
    waiting_.clear();
    release_window();
  }

  PublisherOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::size_t in_flight_ = 0;
  std::size_t waiters_ = 0;
  bool closed_ = false;
  std::uint64_t next_seq_ = 0;
  std::vector<std::unique_ptr<Entry>> inbox_;

  // Loop thread.
  std::deque<std::unique_ptr<Entry>> waiting_;
  std::deque<std::unique_ptr<Entry>> unconfirmed_;  // index = delivery tag - first_tag_
  std::uint64_t first_tag_ = 1;
  std::unordered_map<std::uint64_t, Entry*> by_seq_;
  detail::Clock::time_point earliest_deadline_ = detail::Clock::time_point::max();
  std::size_t to_release_ = 0;
  std::string refused_;       // set by on_publish_refused, read by on_disconnected
  std::size_t suspects_ = 0;  // head of waiting_ to send one at a time
  detail::PropertiesBuilder builder_;
};

Publisher::Publisher(PublisherOptions options)
    : impl_(std::make_shared<Impl>(std::move(options))) {}

Publisher::~Publisher() {
  if (!impl_->flush(impl_->publisher_options().close_timeout)) {
    sb::log::warn("publisher closed with messages in flight",
                  {{"connection", impl_->options().name}, {"in_flight", impl_->in_flight()}});
  }
  impl_->stop();
}

void Publisher::declare(const Topology& topology, std::chrono::milliseconds timeout) {
  impl_->declare(topology, timeout);
}

void Publisher::publish(Message message, PublishOptions options, Callback callback) {
  impl_->publish(std::move(message), std::move(options), std::move(callback));
}

std::future<PublishOutcome> Publisher::publish(Message message, PublishOptions options) {
  auto promise = std::make_shared<std::promise<PublishOutcome>>();
  auto future = promise->get_future();
  impl_->publish(std::move(message), std::move(options),
                 [promise](const PublishOutcome& o) { promise->set_value(o); });
  return future;
}

bool Publisher::flush(std::chrono::milliseconds timeout) {
  return impl_->flush(timeout);
}
bool Publisher::connected() const {
  return impl_->connected();
}
std::size_t Publisher::in_flight() const {
  return impl_->in_flight();
}

}  // namespace sb::broker

#include "switchboard/broker/consumer.hpp"

#include "amqp_codec.hpp"

#include <sys/time.h>

namespace sb::broker {

namespace {

// A blocking connection for admin calls; every synchronous step is bounded by
// the rpc timeout open_connection sets (the connect timeout).
class AdminConnection {
 public:
  explicit AdminConnection(const ConnectionOptions& options)
      : options_(options), user_(detail::parse_url(options.url).user) {
    std::string error;
    conn_ = detail::open_connection(options, true, &error);
    if (conn_ == nullptr) throw BrokerError("broker admin: " + error);
  }
  ~AdminConnection() { detail::close_connection(conn_); }
  AdminConnection(const AdminConnection&) = delete;
  AdminConnection& operator=(const AdminConnection&) = delete;

  struct Got {
    std::uint64_t tag;
    Message message;
  };

  /// basic.get without auto-ack; nullopt when the queue is empty.
  std::optional<Got> get(const std::string& queue) {
    amqp_rpc_reply_t r = amqp_basic_get(conn_, 1, detail::bytes_of(queue), 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      throw BrokerError(detail::describe_reply(r, "broker admin: basic.get " + queue));
    }
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) return std::nullopt;
    const auto tag = static_cast<const amqp_basic_get_ok_t*>(r.reply.decoded)->delivery_tag;
    amqp_message_t msg;
    r = amqp_read_message(conn_, 1, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      throw BrokerError(detail::describe_reply(r, "broker admin: read message"));
    }
    Got got{tag, detail::decode_properties(msg.properties)};
    got.message.body.assign(static_cast<const char*>(msg.body.bytes), msg.body.len);
    amqp_destroy_message(&msg);
    amqp_maybe_release_buffers(conn_);
    return got;
  }

  /// Messages ready in `queue` now (passive declare).
  std::uint32_t message_count(const std::string& queue) {
    amqp_queue_declare_ok_t* ok =
        amqp_queue_declare(conn_, 1, detail::bytes_of(queue), 1, 0, 0, 0, amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn_);
    if (ok == nullptr || r.reply_type != AMQP_RESPONSE_NORMAL) {
      throw BrokerError(detail::describe_reply(r, "broker admin: queue.declare " + queue));
    }
    return ok->message_count;
  }

  void ack(std::uint64_t tag) {
    const int rc = amqp_basic_ack(conn_, 1, tag, 0);
    if (rc != AMQP_STATUS_OK)
      throw BrokerError("broker admin: ack: " + detail::describe_status(rc));
  }

  /// Publishes mandatory with confirm and waits for the confirm.
  void publish_confirmed(const std::string& queue, const Message& m) {
    detail::PropertiesBuilder builder(user_);
    const int rc = amqp_basic_publish(conn_, 1, amqp_cstring_bytes(""), detail::bytes_of(queue), 1,
                                      0, &builder.build(m), detail::bytes_of(m.body));
    if (rc != AMQP_STATUS_OK) {
      throw BrokerError("broker admin: publish: " + detail::describe_status(rc));
    }
    ++published_;
    bool returned = false;
    const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw TimeoutError("broker admin: no publish confirm in time");
      timeval tv{static_cast<time_t>(left.count() / 1000000),
                 static_cast<suseconds_t>(left.count() % 1000000)};
      amqp_frame_t frame;
      const int wr = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
      if (wr == AMQP_STATUS_TIMEOUT) continue;
      if (wr != AMQP_STATUS_OK) {
        throw BrokerError("broker admin: waiting for confirm: " + detail::describe_status(wr));
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;  // the returned message's content
      switch (frame.payload.method.id) {
        case AMQP_BASIC_RETURN_METHOD:
          returned = true;
          break;
        case AMQP_BASIC_ACK_METHOD: {
          const auto* a = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
          if (a->delivery_tag < published_) break;
          if (returned) throw RejectedError("broker admin: queue '" + queue + "' does not exist");
          return;
        }
        case AMQP_BASIC_NACK_METHOD:
          throw RejectedError("broker admin: publish to '" + queue + "' nacked");
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
          throw BrokerError("broker admin: broker closed the channel");
        default:
          break;
      }
    }
  }

 private:
  ConnectionOptions options_;
  std::string user_;
  amqp_connection_state_t conn_ = nullptr;
  std::uint64_t published_ = 0;
};

bool matches(const Message& m, const std::optional<std::string>& id) {
  return !id || m.message_id == *id;
}

}  // namespace

ParkedQueue::ParkedQueue(ConnectionOptions options, std::string queue)
    : options_(std::move(options)), queue_(std::move(queue)) {}

std::vector<ParkedMessage> ParkedQueue::list(std::size_t max) const {
  // Everything fetched stays unacked; closing the connection puts it back in
  // its original place.
  AdminConnection c(options_);
  std::vector<ParkedMessage> out;
  const std::string parked = parked_queue_name(queue_);
  while (out.size() < max) {
    auto got = c.get(parked);
    if (!got) break;
    ParkedMessage p;
    p.failures = static_cast<std::uint32_t>(got->message.header_int(kFailuresHeader).value_or(0));
    if (const auto* e = got->message.header_string(kErrorHeader)) p.error = *e;
    p.message = std::move(got->message);
    out.push_back(std::move(p));
  }
  return out;
}

bool ParkedQueue::untrusted(const Message& m) {
  const auto* error = m.header_string(kErrorHeader);
  return error != nullptr && error->rfind(kUntrustedPublisherError, 0) == 0;
}

std::size_t ParkedQueue::requeue(const std::optional<std::string>& message_id) const {
  AdminConnection c(options_);
  const std::string parked = parked_queue_name(queue_);
  std::size_t n = 0;
  // Only what is parked now: a consumer that fails again at once parks the
  // message anew, and taking it again would loop.
  std::uint32_t left = c.message_count(parked);
  while (left-- > 0) {
    auto got = c.get(parked);
    if (!got) break;
    if (!matches(got->message, message_id)) continue;  // stays unacked: returns on close
    if (untrusted(got->message)) continue;             // never laundered: see consumer.hpp
    Message m = std::move(got->message);
    m.user_id.clear();  // re-published as this connection's user
    for (auto key : {kFailuresHeader, kErrorHeader, kFailedAtHeader, kPermanentHeader}) {
      if (auto it = m.headers.find(key); it != m.headers.end()) m.headers.erase(it);
    }
    c.publish_confirmed(queue_, m);
    c.ack(got->tag);
    ++n;
  }
  return n;
}

std::size_t ParkedQueue::drop(const std::optional<std::string>& message_id) const {
  AdminConnection c(options_);
  const std::string parked = parked_queue_name(queue_);
  std::size_t n = 0;
  while (auto got = c.get(parked)) {
    if (!matches(got->message, message_id)) continue;
    c.ack(got->tag);
    ++n;
  }
  return n;
}

}  // namespace sb::broker

#pragma once
// Conversions between our types and rabbitmq-c's, and the blocking connect
// used by the connector thread and the admin API. Private.

#include "switchboard/broker/message.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/topology.hpp"

#include <amqp.h>
#include <amqp_framing.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace sb::broker::detail {

inline amqp_bytes_t bytes_of(std::string_view s) {
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());  // rabbitmq-c only reads through it
  return b;
}

inline std::string to_string(amqp_bytes_t b) {
  return b.bytes == nullptr ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

std::string describe_status(int status);
std::string describe_reply(const amqp_rpc_reply_t& reply, std::string_view what);

/// Builds amqp_basic_properties_t pointing into `message` and into this
/// object's storage: both must outlive the publish call.
class PropertiesBuilder {
 public:
  /// `user_id`: sent when the message has none (the connection's login user).
  explicit PropertiesBuilder(std::string user_id = {}) : user_id_(std::move(user_id)) {}
  void set_user_id(std::string user_id) { user_id_ = std::move(user_id); }

  /// extra_* adds one more header without copying the message.
  const amqp_basic_properties_t& build(const Message& message, std::string_view extra_key = {},
                                       std::int64_t extra_value = 0);

 private:
  amqp_basic_properties_t props_{};
  std::vector<amqp_table_entry_t> entries_;
  std::string expiration_;
  std::string user_id_;
};

/// Copies everything out of rabbitmq-c's pool memory.
Message decode_properties(const amqp_basic_properties_t& props);

/// Encodes a header map for table arguments (queue arguments, etc.).
struct TableStorage {
  std::vector<amqp_table_entry_t> entries;
  std::vector<std::string> strings;
  amqp_table_t table() {
    amqp_table_t t;
    t.num_entries = static_cast<int>(entries.size());
    t.entries = entries.empty() ? nullptr : entries.data();
    return t;
  }
};
void queue_arguments(const QueueSpec& spec, TableStorage& out);
const char* exchange_type_name(ExchangeType type);

struct ParsedUrl {
  std::string host;
  int port = 5672;
  std::string user;
  std::string password;
  std::string vhost;
};
ParsedUrl parse_url(const std::string& url);  // throws BrokerError

/// Opens a connection, logs in (advertising our capabilities), opens channel
/// 1 and, when asked, puts it in confirm mode; every step within
/// options.connect_timeout. Returns nullptr and sets *error on failure.
amqp_connection_state_t open_connection(const ConnectionOptions& options, bool confirms,
                                        std::string* error);

/// Closes gracefully within the rpc timeout, then frees.
void close_connection(amqp_connection_state_t conn);

std::int64_t epoch_ms(std::chrono::system_clock::time_point t);
std::int64_t now_epoch_ms();

}  // namespace sb::broker::detail

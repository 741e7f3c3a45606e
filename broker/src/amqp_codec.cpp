#include "amqp_codec.hpp"

#include <amqp_tcp_socket.h>

#include <sys/time.h>

#include <cstring>

namespace sb::broker::detail {

std::string describe_status(int status) {
  return std::string(amqp_error_string2(status)) + " (" + std::to_string(status) + ")";
}

std::string describe_reply(const amqp_rpc_reply_t& reply, std::string_view what) {
  std::string out(what);
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return out + ": ok";
    case AMQP_RESPONSE_NONE:
      return out + ": missing RPC reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return out + ": " + describe_status(reply.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        return out + ": connection closed by broker: " + std::to_string(m->reply_code) + " " +
               to_string(m->reply_text);
      }
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        return out + ": channel closed by broker: " + std::to_string(m->reply_code) + " " +
               to_string(m->reply_text);
      }
      return out + ": unexpected server method " + std::to_string(reply.reply.id);
  }
  return out + ": unknown reply type";
}

namespace {

amqp_table_entry_t string_entry(std::string_view key, std::string_view value) {
  amqp_table_entry_t e;
  e.key = bytes_of(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = bytes_of(value);
  return e;
}

amqp_table_entry_t int_entry(std::string_view key, std::int64_t value) {
  amqp_table_entry_t e;
  e.key = bytes_of(key);
  e.value.kind = AMQP_FIELD_KIND_I64;
  e.value.value.i64 = value;
  return e;
}

amqp_table_entry_t bool_entry(std::string_view key, bool value) {
  amqp_table_entry_t e;
  e.key = bytes_of(key);
  e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  e.value.value.boolean = value ? 1 : 0;
  return e;
}

}  // namespace

const amqp_basic_properties_t& PropertiesBuilder::build(const Message& m,
                                                        std::string_view extra_key,
                                                        std::int64_t extra_value) {
  std::memset(&props_, 0, sizeof props_);
  amqp_flags_t flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  props_.delivery_mode = m.persistent ? 2 : 1;
  if (!m.content_type.empty()) {
    flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    props_.content_type = bytes_of(m.content_type);
  }
  if (!m.message_id.empty()) {
    flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props_.message_id = bytes_of(m.message_id);
  }
  if (!m.correlation_id.empty()) {
    flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    props_.correlation_id = bytes_of(m.correlation_id);
  }
  if (!m.reply_to.empty()) {
    flags |= AMQP_BASIC_REPLY_TO_FLAG;
    props_.reply_to = bytes_of(m.reply_to);
  }
  if (!m.type.empty()) {
    flags |= AMQP_BASIC_TYPE_FLAG;
    props_.type = bytes_of(m.type);
  }
  if (const std::string& user = m.user_id.empty() ? user_id_ : m.user_id; !user.empty()) {
    flags |= AMQP_BASIC_USER_ID_FLAG;
    props_.user_id = bytes_of(user);
  }
  if (m.expiration) {
    flags |= AMQP_BASIC_EXPIRATION_FLAG;
    expiration_ = std::to_string(m.expiration->count() < 0 ? 0 : m.expiration->count());
    props_.expiration = bytes_of(expiration_);
  }
  if (m.timestamp) {
    flags |= AMQP_BASIC_TIMESTAMP_FLAG;
    props_.timestamp = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(m.timestamp->time_since_epoch()).count());
  }
  entries_.clear();
  for (const auto& [key, value] : m.headers) {
    if (key == extra_key) continue;
    amqp_table_entry_t e;
    e.key = bytes_of(key);
    if (const auto* s = std::get_if<std::string>(&value)) {
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = bytes_of(*s);
    } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
      e.value.kind = AMQP_FIELD_KIND_I64;
      e.value.value.i64 = *i;
    } else if (const auto* d = std::get_if<double>(&value)) {
      e.value.kind = AMQP_FIELD_KIND_F64;
      e.value.value.f64 = *d;
    } else {
      e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
      e.value.value.boolean = std::get<bool>(value) ? 1 : 0;
    }
    entries_.push_back(e);
  }
  if (!extra_key.empty()) entries_.push_back(int_entry(extra_key, extra_value));
  if (!entries_.empty()) {
    flags |= AMQP_BASIC_HEADERS_FLAG;
    props_.headers.num_entries = static_cast<int>(entries_.size());
    props_.headers.entries = entries_.data();
  }
  props_._flags = flags;
  return props_;
}

Message decode_properties(const amqp_basic_properties_t& p) {
  Message m;
  const amqp_flags_t f = p._flags;
  m.content_type = (f & AMQP_BASIC_CONTENT_TYPE_FLAG) != 0 ? to_string(p.content_type) : "";
  if ((f & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) m.message_id = to_string(p.message_id);
  if ((f & AMQP_BASIC_CORRELATION_ID_FLAG) != 0) m.correlation_id = to_string(p.correlation_id);
  if ((f & AMQP_BASIC_REPLY_TO_FLAG) != 0) m.reply_to = to_string(p.reply_to);
  if ((f & AMQP_BASIC_TYPE_FLAG) != 0) m.type = to_string(p.type);
  if ((f & AMQP_BASIC_USER_ID_FLAG) != 0) m.user_id = to_string(p.user_id);
  m.persistent = (f & AMQP_BASIC_DELIVERY_MODE_FLAG) != 0 && p.delivery_mode == 2;
  if ((f & AMQP_BASIC_EXPIRATION_FLAG) != 0) {
    std::string e = to_string(p.expiration);
    char* end = nullptr;
    long long v = std::strtoll(e.c_str(), &end, 10);
    if (end != e.c_str()) m.expiration = std::chrono::milliseconds(v);
  }
  if ((f & AMQP_BASIC_TIMESTAMP_FLAG) != 0) {
    m.timestamp = std::chrono::system_clock::time_point(
        std::chrono::seconds(static_cast<std::int64_t>(p.timestamp)));
  }
  if ((f & AMQP_BASIC_HEADERS_FLAG) != 0) {
    for (int i = 0; i < p.headers.num_entries; ++i) {
      const amqp_table_entry_t& e = p.headers.entries[i];
      std::string key = to_string(e.key);
      const amqp_field_value_t& v = e.value;
      switch (v.kind) {
        case AMQP_FIELD_KIND_UTF8:
        case AMQP_FIELD_KIND_BYTES:
          m.headers[key] = to_string(v.value.bytes);
          break;
        case AMQP_FIELD_KIND_BOOLEAN:
          m.headers[key] = v.value.boolean != 0;
          break;
        case AMQP_FIELD_KIND_I8:
          m.headers[key] = std::int64_t{v.value.i8};
          break;
        case AMQP_FIELD_KIND_U8:
          m.headers[key] = std::int64_t{v.value.u8};
          break;
        case AMQP_FIELD_KIND_I16:
          m.headers[key] = std::int64_t{v.value.i16};
          break;
        case AMQP_FIELD_KIND_U16:
          m.headers[key] = std::int64_t{v.value.u16};
          break;
        case AMQP_FIELD_KIND_I32:
          m.headers[key] = std::int64_t{v.value.i32};
          break;
        case AMQP_FIELD_KIND_U32:
          m.headers[key] = std::int64_t{v.value.u32};
          break;
        case AMQP_FIELD_KIND_I64:
          m.headers[key] = v.value.i64;
          break;
        case AMQP_FIELD_KIND_U64:
        case AMQP_FIELD_KIND_TIMESTAMP:
          m.headers[key] = static_cast<std::int64_t>(v.value.u64);
          break;
        case AMQP_FIELD_KIND_F32:
          m.headers[key] = static_cast<double>(v.value.f32);
          break;
        case AMQP_FIELD_KIND_F64:
          m.headers[key] = v.value.f64;
          break;
        default:
          // Nested tables/arrays (x-death) and decimals are broker metadata we
          // do not model; the retry machinery keeps its own headers instead.
          break;
      }
    }
  }
  return m;
}

const char* exchange_type_name(ExchangeType type) {
  switch (type) {
    case ExchangeType::direct:
      return "direct";
    case ExchangeType::topic:
      return "topic";
    case ExchangeType::fanout:
      return "fanout";
    case ExchangeType::headers:
      return "headers";
  }
  return "topic";
}

void queue_arguments(const QueueSpec& q, TableStorage& out) {
  out.entries.clear();
  out.strings.clear();
  out.strings.reserve(8);  // entries point into these: no reallocation allowed
  auto add_string = [&](const char* key, std::string value) {
    out.strings.push_back(std::move(value));
    out.entries.push_back(string_entry(key, out.strings.back()));
  };
  if (q.single_active_consumer) out.entries.push_back(bool_entry("x-single-active-consumer", true));
  if (q.quorum) add_string("x-queue-type", "quorum");
  if (q.max_length) out.entries.push_back(int_entry("x-max-length", *q.max_length));
  if (q.overflow) {
    switch (*q.overflow) {
      case Overflow::drop_head:
        add_string("x-overflow", "drop-head");
        break;
      case Overflow::reject_publish:
        add_string("x-overflow", "reject-publish");
        break;
      case Overflow::reject_publish_dlx:
        add_string("x-overflow", "reject-publish-dlx");
        break;
    }
  }
  if (q.expires) out.entries.push_back(int_entry("x-expires", q.expires->count()));
  if (q.message_ttl) out.entries.push_back(int_entry("x-message-ttl", q.message_ttl->count()));
  if (q.dead_letter_exchange) add_string("x-dead-letter-exchange", *q.dead_letter_exchange);
  if (q.dead_letter_routing_key)
    add_string("x-dead-letter-routing-key", *q.dead_letter_routing_key);
}

ParsedUrl parse_url(const std::string& url) {
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) {
    throw BrokerError("broker: malformed AMQP URL");  // never echo: it holds a password
  }
  if (info.ssl != 0) throw BrokerError("broker: amqps:// is not supported");
  ParsedUrl out;
  out.host = info.host;
  out.port = info.port;
  out.user = info.user;
  out.password = info.password;
  out.vhost = (info.vhost == nullptr || info.vhost[0] == '\0') ? "/" : info.vhost;
  return out;
}

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace

amqp_connection_state_t open_connection(const ConnectionOptions& options, bool confirms,
                                        std::string* error) {
  ParsedUrl url;
  try {
    url = parse_url(options.url);
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
  amqp_connection_state_t conn = amqp_new_connection();
  if (conn == nullptr) {
    *error = "out of memory";
    return nullptr;
  }
  auto fail = [&](std::string why) {
    *error = std::move(why);
    amqp_destroy_connection(conn);
    return nullptr;
  };
  amqp_socket_t* socket = amqp_tcp_socket_new(conn);
  if (socket == nullptr) return fail("cannot create socket");
  timeval tv = to_timeval(options.connect_timeout);
  int rc = amqp_socket_open_noblock(socket, url.host.c_str(), url.port, &tv);
  if (rc != AMQP_STATUS_OK) {
    return fail("connect to " + url.host + ":" + std::to_string(url.port) + ": " +
                describe_status(rc));
  }
  amqp_set_handshake_timeout(conn, &tv);
  amqp_set_rpc_timeout(conn, &tv);

  amqp_table_entry_t caps[] = {
      bool_entry("publisher_confirms", true),
      bool_entry("consumer_cancel_notify", true),
      bool_entry("connection.blocked", true),
      bool_entry("basic.nack", true),
      bool_entry("exchange_exchange_bindings", true),
      bool_entry("authentication_failure_close", true),
  };
  amqp_table_entry_t props[3];
  props[0].key = amqp_cstring_bytes("capabilities");
  props[0].value.kind = AMQP_FIELD_KIND_TABLE;
  props[0].value.value.table.num_entries = static_cast<int>(sizeof caps / sizeof caps[0]);
  props[0].value.value.table.entries = caps;
  props[1] = string_entry("connection_name", options.name);
  props[2] = string_entry("product", "switchboard");
  amqp_table_t client_properties;
  client_properties.num_entries = 3;
  client_properties.entries = props;

  const int heartbeat = static_cast<int>(options.heartbeat.count());
  amqp_rpc_reply_t r =
      amqp_login_with_properties(conn, url.vhost.c_str(), 0, 131072, heartbeat, &client_properties,
                                 AMQP_SASL_METHOD_PLAIN, url.user.c_str(), url.password.c_str());
  if (r.reply_type != AMQP_RESPONSE_NORMAL) return fail(describe_reply(r, "login"));
  amqp_channel_open(conn, 1);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) return fail(describe_reply(r, "channel.open"));
  if (confirms) {
    amqp_confirm_select(conn, 1);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return fail(describe_reply(r, "confirm.select"));
  }
  return conn;
}

void close_connection(amqp_connection_state_t conn) {
  if (conn == nullptr) return;
  timeval tv = to_timeval(std::chrono::milliseconds(1000));
  amqp_set_rpc_timeout(conn, &tv);
  (void)amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

std::int64_t epoch_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::int64_t now_epoch_ms() {
  return epoch_ms(std::chrono::system_clock::now());
}

}  // namespace sb::broker::detail

namespace sb::broker {

std::string login_user(const std::string& url) {
  return detail::parse_url(url).user;
}

}  // namespace sb::broker

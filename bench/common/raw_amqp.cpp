#include "raw_amqp.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <stdexcept>

namespace sb::bench {
namespace {

amqp_bytes_t bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

void check(amqp_rpc_reply_t r, const char* what) {
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    throw std::runtime_error(std::string("raw amqp: ") + what);
}

}  // namespace

RawConnection::RawConnection(const std::string& url, bool confirms) {
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info;
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) throw std::runtime_error("bad url");
  c = amqp_new_connection();
  amqp_socket_t* s = amqp_tcp_socket_new(c);
  timeval tv{5, 0};
  if (amqp_socket_open_noblock(s, info.host, info.port, &tv) != AMQP_STATUS_OK) {
    throw std::runtime_error("raw amqp: connect failed");
  }
  std::string vhost = (info.vhost == nullptr || info.vhost[0] == '\0') ? "/" : info.vhost;
  // amqp_parse_url leaves the vhost URL-encoded.
  std::string decoded;
  for (std::size_t i = 0; i < vhost.size(); ++i) {
    if (vhost[i] == '%' && i + 2 < vhost.size()) {
      decoded += static_cast<char>(std::stoi(vhost.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      decoded += vhost[i];
    }
  }
  check(amqp_login(c, decoded.c_str(), 0, 131072, 10, AMQP_SASL_METHOD_PLAIN, info.user,
                   info.password),
        "login");
  amqp_channel_open(c, 1);
  check(amqp_get_rpc_reply(c), "channel.open");
  if (confirms) {
    amqp_confirm_select(c, 1);
    check(amqp_get_rpc_reply(c), "confirm.select");
  }
}

RawConnection::~RawConnection() {
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
}

void RawConnection::check(amqp_rpc_reply_t r, const char* what) {
  if (r.reply_type != AMQP_RESPONSE_NORMAL)
    throw std::runtime_error(std::string("raw amqp: ") + what);
}

void raw_publish_confirmed(const std::string& url, const std::string& exchange,
                           const std::vector<std::string>& routing_keys,
                           const std::vector<std::string>& bodies, std::size_t window,
                           const RawProperties& properties) {
  RawConnection r(url, true);
  amqp_basic_properties_t base{};
  base._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  base.content_type = amqp_cstring_bytes("application/json");
  base.delivery_mode = 2;
  const std::uint64_t n = bodies.size();
  std::vector<bool> acked(n + 1, false);
  std::uint64_t sent = 0;
  std::uint64_t confirmed = 0;
  while (confirmed < n) {
    while (sent < n && sent - confirmed < window) {
      amqp_basic_properties_t p = base;
      if (properties) properties(static_cast<std::size_t>(sent), p);
      if (amqp_basic_publish(r.c, 1, amqp_cstring_bytes(exchange.c_str()),
                             bytes(routing_keys[sent]), 0, 0, &p,
                             bytes(bodies[sent])) != AMQP_STATUS_OK) {
        throw std::runtime_error("raw amqp: publish failed");
      }
      ++sent;
    }
    amqp_frame_t f;
    if (amqp_simple_wait_frame(r.c, &f) != AMQP_STATUS_OK)
      throw std::runtime_error("raw amqp: wait");
    if (f.frame_type != AMQP_FRAME_METHOD) continue;
    if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) throw std::runtime_error("raw amqp: nack");
    if (f.payload.method.id != AMQP_BASIC_ACK_METHOD) continue;
    const auto* a = static_cast<const amqp_basic_ack_t*>(f.payload.method.decoded);
    const std::uint64_t lo = a->multiple != 0 ? 1 : a->delivery_tag;
    for (std::uint64_t t = lo; t <= a->delivery_tag; ++t) {
      if (!acked[t]) {
        acked[t] = true;
        ++confirmed;
      }
    }
    amqp_maybe_release_buffers(r.c);
  }
}

void raw_bind_queue(const std::string& url, const std::string& queue, const std::string& exchange,
                    const std::string& key) {
  RawConnection r(url, false);
  amqp_exchange_declare(r.c, 1, amqp_cstring_bytes(exchange.c_str()), amqp_cstring_bytes("topic"),
                        0, 1, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(r.c), "exchange.declare");
  amqp_queue_declare(r.c, 1, bytes(queue), 0, 1, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(r.c), "queue.declare");
  amqp_queue_bind(r.c, 1, bytes(queue), amqp_cstring_bytes(exchange.c_str()), bytes(key),
                  amqp_empty_table);
  check(amqp_get_rpc_reply(r.c), "queue.bind");
  amqp_queue_purge(r.c, 1, bytes(queue));
  check(amqp_get_rpc_reply(r.c), "queue.purge");
}

void raw_purge_queue(const std::string& url, const std::string& queue) {
  RawConnection r(url, false);
  amqp_queue_purge(r.c, 1, bytes(queue));
  check(amqp_get_rpc_reply(r.c), "queue.purge");
}

double percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  auto idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(samples.size() - 1));
  return samples[idx];
}

}  // namespace sb::bench

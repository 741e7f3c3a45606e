// sb::broker against plain rabbitmq-c with the same settings, in one run:
//   1. publish with confirms + consume with per-message acks, 1 KB JSON,
//      persistent, durable queue, confirm window W, prefetch P;
//   2. RPC round trips through sb.rpc with direct reply-to, at 1 and at 64
//      calls in flight.
// Prints figures, ratios and a final table against the goals; asserts
// nothing. Run it on a quiet box: it prints the load average before and
// after, and figures taken while builds run are noise.
//
// Usage: bench_broker [--only throughput|rpc] [--side sb|plain] [AMQP_URL] [messages] [rpc_calls]
//   (AMQP_URL defaults to $SB_RABBITMQ_URL; --side runs one client only, for
//   profiling: perf stat -e task-clock,context-switches bench_broker --side sb)

#include "switchboard/broker/broker.hpp"
#include "switchboard/shared/log.hpp"

#include <amqp.h>

#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include "raw_amqp.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace bk = sb::broker;

constexpr std::size_t kWindow = 256;      // publisher confirm window, both clients
constexpr std::uint16_t kPrefetch = 256;  // consumer prefetch, both clients

std::string g_url;

std::string body_1k() {
  std::string b = "{\"type\":\"bench.message.sent\",\"data\":{\"pad\":\"";
  b.append(1024 - b.size() - 4, 'x');
  return b + "\"}}";
}

// ------------------------------------------------------------ plain client

// The plain client: bench/common's raw connection to this run's broker.
struct Raw : sb::bench::RawConnection {
  explicit Raw(bool confirms) : RawConnection(g_url, confirms) {}
};

amqp_bytes_t bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

void raw_declare_queue(const std::string& name, bool durable, bool auto_delete) {
  Raw r(false);
  amqp_queue_declare(r.c, 1, bytes(name), 0, durable ? 1 : 0, 0, auto_delete ? 1 : 0,
                     amqp_empty_table);
  Raw::check(amqp_get_rpc_reply(r.c), "queue.declare");
}

void raw_delete_queue(const std::string& name) {
  Raw r(false);
  amqp_queue_delete(r.c, 1, bytes(name), 0, 0);
  Raw::check(amqp_get_rpc_reply(r.c), "queue.delete");
}

double raw_throughput(const std::string& queue, int n) {
  const std::string body = body_1k();
  std::atomic<bool> consumer_ready{false};
  const auto t0 = Clock::now();
  Clock::time_point done_consume;
  std::thread consumer([&] {
    Raw r(false);
    amqp_basic_qos(r.c, 1, 0, kPrefetch, 0);
    amqp_basic_consume(r.c, 1, bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    Raw::check(amqp_get_rpc_reply(r.c), "basic.consume");
    consumer_ready = true;
    int got = 0;
    while (got < n) {
      amqp_maybe_release_buffers(r.c);
      amqp_envelope_t env;
      timeval tv{30, 0};
      amqp_rpc_reply_t res = amqp_consume_message(r.c, &env, &tv, 0);
      if (res.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("raw consume failed");
      amqp_basic_ack(r.c, 1, env.delivery_tag, 0);
      amqp_destroy_envelope(&env);
      ++got;
    }
    done_consume = Clock::now();
  });
  {
    Raw r(true);
    amqp_basic_properties_t p{};
    p._flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = 2;
    std::vector<bool> acked(static_cast<std::size_t>(n) + 1, false);
    std::uint64_t sent = 0, confirmed = 0;
    while (confirmed < static_cast<std::uint64_t>(n)) {
      while (sent < static_cast<std::uint64_t>(n) && sent - confirmed < kWindow) {
        const std::string id = std::to_string(sent);
        p.message_id = bytes(id);
        if (amqp_basic_publish(r.c, 1, amqp_empty_bytes, bytes(queue), 0, 0, &p, bytes(body)) !=
            AMQP_STATUS_OK) {
          throw std::runtime_error("raw publish failed");
        }
        ++sent;
      }
      amqp_frame_t f;
      if (amqp_simple_wait_frame(r.c, &f) != AMQP_STATUS_OK) throw std::runtime_error("raw wait");
      if (f.frame_type != AMQP_FRAME_METHOD || f.payload.method.id != AMQP_BASIC_ACK_METHOD)
        continue;
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
  consumer.join();
  return n / std::chrono::duration<double>(done_consume - t0).count();
}

double lib_throughput(const std::string& queue, int n) {
  const std::string body = body_1k();
  bk::ConnectionOptions co;
  co.url = g_url;
  co.name = "bench";
  bk::ConsumerOptions cons_opts;
  cons_opts.connection = co;
  cons_opts.connection.name = "bench.con";
  cons_opts.workers = 2;
  bk::Consumer consumer(cons_opts);
  std::atomic<int> got{0};
  std::mutex mu;
  std::condition_variable cv;
  bk::QueueSpec q;
  q.name = queue;
  bk::ConsumeOptions o;
  o.prefetch = kPrefetch;
  o.retry.enabled = false;
  consumer.consume(q, o, [&](const bk::Delivery&) {
    if (got.fetch_add(1) + 1 == n) {
      std::lock_guard lk(mu);
      cv.notify_all();
    }
  });
  bk::PublisherOptions po;
  po.connection = co;
  po.connection.name = "bench.pub";
  po.max_in_flight = kWindow;
  bk::Publisher pub(po);
  while (!pub.connected()) std::this_thread::sleep_for(1ms);
  std::atomic<int> failed{0};
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    bk::Message m;
    m.body = body;
    m.message_id = std::to_string(i);
    pub.publish(std::move(m), {"", queue, false, {}}, [&](const bk::PublishOutcome& out) {
      if (!out.ok()) failed.fetch_add(1);
    });
  }
  {
    std::unique_lock lk(mu);
    cv.wait_for(lk, 300s, [&] { return got.load() >= n; });
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!pub.flush(30s) || failed.load() != 0) std::fprintf(stderr, "library: publishes failed\n");
  return n / secs;
}

// --------------------------------------------------------------------- RPC

struct Latencies {
  std::vector<double> us;
  double seconds = 0;
  double p(double q) {
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    return us[std::min(us.size() - 1,
                       static_cast<std::size_t>(q * static_cast<double>(us.size())))];
  }
  double rate() const { return static_cast<double>(us.size()) / seconds; }
};

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// One line of the final table.
struct Row {
  std::string what;
  double plain = 0;
  double sb = 0;
  std::string goal;  // empty: no goal, shown for context
  std::function<bool(double, double)> met;
};

// Plain server: consume rpc.<service>, reply on the same connection, ack.
class RawRpcServer {
 public:
  explicit RawRpcServer(const std::string& service) {
    thread_ = std::thread([this, service] { run(service); });
    while (!ready_) std::this_thread::sleep_for(1ms);
  }
  ~RawRpcServer() {
    stop_ = true;
    thread_.join();
  }
  RawRpcServer(const RawRpcServer&) = delete;
  RawRpcServer& operator=(const RawRpcServer&) = delete;

 private:
  void run(const std::string& service) {
    Raw r(false);
    const std::string queue = "rpc." + service;
    amqp_exchange_declare(r.c, 1, amqp_cstring_bytes(bk::kRpcExchange),
                          amqp_cstring_bytes("direct"), 0, 1, 0, 0, amqp_empty_table);
    amqp_queue_declare(r.c, 1, bytes(queue), 0, 0, 0, 1, amqp_empty_table);
    amqp_queue_bind(r.c, 1, bytes(queue), amqp_cstring_bytes(bk::kRpcExchange), bytes(service),
                    amqp_empty_table);
    amqp_basic_qos(r.c, 1, 0, 64, 0);
    amqp_basic_consume(r.c, 1, bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    Raw::check(amqp_get_rpc_reply(r.c), "rpc server setup");
    ready_ = true;
    while (!stop_) {
      amqp_maybe_release_buffers(r.c);
      amqp_envelope_t env;
      timeval tv{0, 100000};
      amqp_rpc_reply_t res = amqp_consume_message(r.c, &env, &tv, 0);
      if (res.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          res.library_error == AMQP_STATUS_TIMEOUT) {
        continue;
      }
      if (res.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("raw rpc consume");
      amqp_basic_properties_t p{};
      p._flags = AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
      p.correlation_id = env.message.properties.correlation_id;
      p.content_type = amqp_cstring_bytes("application/json");
      amqp_basic_publish(r.c, 1, amqp_empty_bytes, env.message.properties.reply_to, 0, 0, &p,
                         env.message.body);
      amqp_basic_ack(r.c, 1, env.delivery_tag, 0);
      amqp_destroy_envelope(&env);
    }
  }

  std::thread thread_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stop_{false};
};

Latencies raw_rpc(const std::string& service, int calls, int in_flight) {
  Raw r(false);
  amqp_basic_consume(r.c, 1, amqp_cstring_bytes("amq.rabbitmq.reply-to"), amqp_empty_bytes, 0, 1, 0,
                     amqp_empty_table);
  Raw::check(amqp_get_rpc_reply(r.c), "reply consume");
  const std::string body = "{\"ping\":1}";
  std::unordered_map<std::string, Clock::time_point> started;
  std::uint64_t next = 0;
  auto send = [&] {
    const std::string id = std::to_string(next++);
    amqp_basic_properties_t p{};
    p._flags = AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
               AMQP_BASIC_EXPIRATION_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG |
               AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.correlation_id = bytes(id);
    p.reply_to = amqp_cstring_bytes("amq.rabbitmq.reply-to");
    p.expiration = amqp_cstring_bytes("5000");
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = 1;
    started[id] = Clock::now();
    amqp_basic_publish(r.c, 1, amqp_cstring_bytes(bk::kRpcExchange), bytes(service), 1, 0, &p,
                       bytes(body));
  };
  Latencies out;
  out.us.reserve(static_cast<std::size_t>(calls));
  const auto t0 = Clock::now();
  for (int i = 0; i < in_flight && i < calls; ++i) send();
  while (static_cast<int>(out.us.size()) < calls) {
    amqp_maybe_release_buffers(r.c);
    amqp_envelope_t env;
    timeval tv{10, 0};
    amqp_rpc_reply_t res = amqp_consume_message(r.c, &env, &tv, 0);
    if (res.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("raw rpc reply");
    const std::string id(static_cast<const char*>(env.message.properties.correlation_id.bytes),
                         env.message.properties.correlation_id.len);
    amqp_destroy_envelope(&env);
    auto it = started.find(id);
    if (it == started.end()) continue;
    out.us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - it->second).count());
    started.erase(it);
    if (static_cast<int>(next) < calls) send();
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

Latencies lib_rpc(bk::RpcClient& client, const std::string& service, int calls, int in_flight) {
  Latencies out;
  out.us.reserve(static_cast<std::size_t>(calls));
  std::mutex mu;
  std::condition_variable cv;
  int issued = 0;
  int errors = 0;
  const std::string body = "{\"ping\":1}";
  std::function<void()> issue = [&] {
    const auto start = Clock::now();
    bk::Message m;
    m.body = body;
    m.persistent = false;
    client.call(service, std::move(m), 5s, [&, start](bk::RpcClient::Result r) {
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
      bool more = false;
      bool last = false;
      {
        std::lock_guard lk(mu);
        if (!r.reply) ++errors;
        out.us.push_back(us);
        if (issued < calls) {
          ++issued;
          more = true;
        }
        last = static_cast<int>(out.us.size()) >= calls;
      }
      if (more) issue();
      // Only the last reply wakes the waiting thread: a wake-up per call
      // would charge the library with the benchmark's own context switches.
      if (last) cv.notify_all();
    });
  };
  const auto t0 = Clock::now();
  {
    std::lock_guard lk(mu);
    issued = std::min(in_flight, calls);
  }
  for (int i = 0; i < std::min(in_flight, calls); ++i) issue();
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return static_cast<int>(out.us.size()) >= calls; });
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (errors > 0) std::fprintf(stderr, "library rpc: %d errors\n", errors);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  std::string side;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--side" && i + 1 < argc) {
      side = argv[++i];
    } else {
      args.push_back(a);
    }
  }
  const char* env = std::getenv("SB_RABBITMQ_URL");
  g_url = !args.empty() ? args[0] : (env != nullptr ? env : "");
  if (g_url.empty() || (!only.empty() && only != "throughput" && only != "rpc") ||
      (!side.empty() && side != "sb" && side != "plain")) {
    std::fprintf(stderr,
                 "usage: bench_broker [--only throughput|rpc] [--side sb|plain] [AMQP_URL] "
                 "[messages] [rpc_calls]\n");
    return 2;
  }
  const bool run_plain = side.empty() || side == "plain";
  const bool run_sb = side.empty() || side == "sb";
  const int n = args.size() > 1 ? std::atoi(args[1].c_str()) : 20000;
  const int calls = args.size() > 2 ? std::atoi(args[2].c_str()) : 5000;
  sb::log::Options lo;
  lo.level = sb::log::Level::warn;
  sb::log::init(lo);

  std::vector<Row> rows;
  try {
    std::printf("sb::broker vs plain rabbitmq-c 0.11 (same broker, same run)\n");
    std::printf("load average before: %s (%u cores)\n\n", loadavg().c_str(),
                std::thread::hardware_concurrency());
    const std::string suffix = bk::new_id().substr(0, 8);
    if (only.empty() || only == "throughput") {
      std::printf(
          "throughput: %d msgs, 1 KB JSON, persistent, durable queue, confirm window %zu, "
          "prefetch %u, one ack per message (sb: batched by the library)\n",
          n, kWindow, kPrefetch);
      double raw_tp = 0, lib_tp = 0;
      // Alternate and keep the best of two, so broker warm-up and disk noise
      // do not favour either side.
      for (int round = 0; round < 2; ++round) {
        const std::string qr = "bench.raw." + suffix + std::to_string(round);
        const std::string ql = "bench.lib." + suffix + std::to_string(round);
        raw_declare_queue(qr, true, false);
        raw_declare_queue(ql, true, false);
        const double r = run_plain ? raw_throughput(qr, n) : 0;
        const double l = run_sb ? lib_throughput(ql, n) : 0;
        std::printf("  round %d: plain %8.0f msg/s, sb %8.0f msg/s\n", round + 1, r, l);
        raw_tp = std::max(raw_tp, r);
        lib_tp = std::max(lib_tp, l);
        raw_delete_queue(qr);
        raw_delete_queue(ql);
      }
      rows.push_back(Row{"publish+consume msg/s", raw_tp, lib_tp, ">= 0.9x plain",
                         [](double p, double s) { return s >= 0.9 * p; }});
      std::printf("\n");
    }

    if (only.empty() || only == "rpc") {
      RawRpcServer raw_server("rawbench." + suffix);
      bk::RpcServerOptions so;
      so.connection.url = g_url;
      so.connection.name = "bench.rpcserver";
      so.workers = 2;
      so.prefetch = 64;
      bk::RpcServer server(so);
      const std::string lib_service = "libbench." + suffix;
      server.serve(lib_service, [](const bk::Delivery& d) {
        bk::Message r;
        r.body = d.message.body;
        r.persistent = false;
        return r;
      });
      bk::RpcClientOptions co;
      co.connection.url = g_url;
      co.connection.name = "bench.rpcclient";
      bk::RpcClient client(co);
      while (!client.connected()) std::this_thread::sleep_for(1ms);
      if (run_sb) (void)lib_rpc(client, lib_service, 500, 8);  // warm-up
      if (run_plain) (void)raw_rpc("rawbench." + suffix, 500, 8);

      std::printf("rpc: %d calls, direct reply-to, mandatory, expiration set\n", calls);
      std::printf("  %-9s %-11s %9s %8s %8s %8s %8s %8s\n", "in flight", "client", "calls/s",
                  "p50 us", "p90 us", "p99 us", "p99.9 us", "max us");
      for (int inflight : {1, 64}) {
        auto raw = run_plain ? raw_rpc("rawbench." + suffix, calls, inflight) : Latencies{{}, 1};
        auto lib = run_sb ? lib_rpc(client, lib_service, calls, inflight) : Latencies{{}, 1};
        for (auto* l : {&raw, &lib}) {
          std::printf("  %-9d %-11s %9.0f %8.0f %8.0f %8.0f %8.0f %8.0f\n", inflight,
                      l == &raw ? "plain" : "sb::broker", l->rate(), l->p(0.50), l->p(0.90),
                      l->p(0.99), l->p(0.999), l->p(1.0));
        }
        const std::string f = std::to_string(inflight) + " in flight";
        rows.push_back(Row{"rpc calls/s, " + f, raw.rate(), lib.rate(), "", nullptr});
        rows.push_back(Row{"rpc p50 us, " + f, raw.p(0.50), lib.p(0.50), "", nullptr});
        if (inflight == 1) {
          rows.push_back(Row{"rpc p99 us, " + f, raw.p(0.99), lib.p(0.99), "sb <= 1000 us",
                             [](double, double s) { return s <= 1000.0; }});
        } else {
          rows.push_back(Row{"rpc p99 us, " + f, raw.p(0.99), lib.p(0.99), "<= 1.1x plain",
                             [](double p, double s) { return s <= 1.1 * p; }});
        }
      }
      std::printf("\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_broker: %s\n", e.what());
    return 1;
  }

  std::printf("load average after: %s\n\n", loadavg().c_str());
  std::printf("%-26s %11s %11s %8s  %-15s %s\n", "summary", "plain", "sb::broker", "sb/plain",
              "goal", "met");
  for (const auto& r : rows) {
    std::printf("%-26s %11.0f %11.0f %8.3f  %-15s %s\n", r.what.c_str(), r.plain, r.sb,
                r.sb / r.plain, r.goal.empty() ? "-" : r.goal.c_str(),
                r.met ? (r.met(r.plain, r.sb) ? "yes" : "NO") : "");
  }
  return 0;
}

// The edge at 64 concurrent connections, beside its baselines, in one run:
//
//   (a) wrk -> sb-edge -> AMQP RPC (rpc.benchamqp.1.0.0) -> sb-test-plugin
//   (b) wrk -> sb-edge -> HTTP upstream -> sb-test-plugin (cpp-httplib)
//   (c) wrk -> nginx proxy_pass (keep-alive upstream) -> the same plugin
//       instance as (b)
//   (d) a plain rabbitmq-c RPC client: N requests in flight on direct
//       reply-to, published to sb.rpc with the routing key of (a)'s handler,
//       mandatory, with expiration and x-sb-deadline (docs/protocol.md 6, 9.1)
//       -> the same plugin instance as (a)
//
// Goals (issue 6): (b)/(c) >= 1.0 and (a)/(d) >= 0.8.
//
// It starts the platform's own processes from a build directory (sb-store,
// sb-registry, sb-edge, two sb-test-plugin instances) and nginx, in a temp
// folder, against the RabbitMQ, PostgreSQL and Redis it is given; waits for
// readiness by polling with deadlines; runs each case for a warm-up, then a
// measured duration; prints req/s, p50, p99, error counts and the ratios;
// stops every child process at the end, also on failure or interruption.
//
// Usage: bench_edge AMQP_URL POSTGRES_URL REDIS_URL [--build DIR]
//          [--duration S] [--warmup S] [--connections N] [--wrk-threads N]
//          [--rounds N] [--edge-threads N] [--edge-loops N] [--edge-rpc-connections N]
//          [--plugin-http-threads N] [--only abcd] [--keep]

#include <httplib.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>

#include <amqp.h>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "procs.hpp"
#include "raw_amqp.hpp"
#include "switchboard/broker/options.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

using namespace sb::bench;

// ------------------------------------------------------------------ options

struct Options {
  std::string amqp_url;
  std::string postgres_url;
  std::string redis_url;
  std::string build_dir = "build/release";
  std::string wrk = "/usr/bin/wrk";
  std::string nginx = "/usr/sbin/nginx";
  int duration_s = 10;
  int warmup_s = 2;
  int connections = 64;
  int wrk_threads = 2;
  int edge_threads = 128;  // the edge's default (http.threads)
  int edge_loops = 2;      // the edge's default (http.loops)
  int rounds = 3;          // alternating rounds; ratios of the medians
  int edge_rpc = 1;        // the edge's default (edge.rpc_connections)
  int plugin_http_threads = 256;
  std::string only = "abcd";
  bool keep = false;
  bool runs(char c) const { return only.find(c) != std::string::npos; }
};

// ------------------------------------------------------------------ HTTP

struct HttpResult {
  int status = -1;
  std::string body;
};

/// One GET on a fresh connection that is closed after (a kept-alive
/// connection would hold one of the edge's worker threads).
HttpResult http_get(int port, const std::string& path, const std::string& token = "") {
  httplib::Client c("127.0.0.1", port);
  c.set_keep_alive(false);
  c.set_connection_timeout(1, 0);
  c.set_read_timeout(5, 0);
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  auto r = c.Get(path.c_str(), h);
  HttpResult out;
  if (r) {
    out.status = r->status;
    out.body = r->body;
  }
  return out;
}

/// The base_url of a live instance of name@version in a route table
/// (GET /api/v1/services), "amqp" for an AMQP instance, nullopt if none.
std::optional<std::string> live_instance(const std::string& table, const std::string& name,
                                         const std::string& version) {
  rapidjson::Document d;
  d.Parse(table.data(), table.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("services") || !d["services"].IsArray()) {
    return std::nullopt;
  }
  for (const auto& s : d["services"].GetArray()) {
    if (!s.HasMember("name") || name != s["name"].GetString()) continue;
    for (const auto& v : s["versions"].GetArray()) {
      if (version != v["version"].GetString()) continue;
      for (const auto& i : v["instances"].GetArray()) {
        const std::string transport = i["transport"].GetString();
        if (transport == "http" && i.HasMember("base_url")) return i["base_url"].GetString();
        if (transport == "amqp") return std::string("amqp");
      }
    }
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ figures

struct Figures {
  std::string label;
  bool ran = false;
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double p90_ms = 0;  // besides the brief: where a tail starts
  double max_ms = 0;
  std::uint64_t requests = 0;
  std::uint64_t non2xx = 0;
  // wrk socket errors: connect, read, write, timeout (-1: not applicable)
  std::int64_t sock_connect = -1, sock_read = -1, sock_write = -1, sock_timeout = -1;
  std::string notes;
};

void print_figures(const Figures& f) {
  std::string sock = "-";
  if (f.sock_connect >= 0) {
    sock = std::to_string(f.sock_connect) + "/" + std::to_string(f.sock_read) + "/" +
           std::to_string(f.sock_write) + "/" + std::to_string(f.sock_timeout);
  }
  std::printf("  %-40s %8.0f %7.2f %8.2f %7.2f %8.1f %9" PRIu64 " %6" PRIu64 "  %s\n",
              f.label.c_str(), f.rps, f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms, f.requests, f.non2xx,
              sock.c_str());
  if (!f.notes.empty()) std::printf("%s", f.notes.c_str());
  std::fflush(stdout);
}

void print_header() {
  std::printf("  %-40s %8s %7s %8s %7s %8s %9s %6s  %s\n", "case", "req/s", "p50 ms", "p90 ms",
              "p99 ms", "max ms", "requests", "errors", "socket errors c/r/w/t");
}

// ------------------------------------------------------------------ wrk

constexpr const char* kSummaryLua = R"lua(
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "SBWRK requests=%.0f duration_us=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(90.0),
    latency:percentile(99.0), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
)lua";

// Diagnostics only (parsing every response slows wrk): counts statuses and
// keeps one body of each non-2xx status.
constexpr const char* kStatusLua = R"lua(
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) statuses = {}; bodies = {} end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 and bodies[status] == nil then bodies[status] = body end
end
done = function(summary, latency, requests)
  local total, example = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
    for k, v in pairs(t:get("bodies")) do example[k] = v end
  end
  for k, v in pairs(total) do
    local b = (example[k] or ""):sub(1, 300):gsub("\n", " ")
    io.write(string.format("SBSTATUS %d %d %s\n", k, v, b))
  end
end
)lua";

std::map<std::string, double> parse_summary(const std::string& out) {
  std::map<std::string, double> kv;
  const auto at = out.find("SBWRK ");
  if (at == std::string::npos) return kv;
  std::istringstream line(out.substr(at + 6, out.find('\n', at) - at - 6));
  std::string tok;
  while (line >> tok) {
    const auto eq = tok.find('=');
    if (eq != std::string::npos) kv[tok.substr(0, eq)] = std::strtod(tok.c_str() + eq + 1, nullptr);
  }
  return kv;
}

Captured wrk_run(const Options& o, const std::string& url, int seconds, const std::string& script) {
  return run_capture(
      {o.wrk, "-t", std::to_string(o.wrk_threads), "-c", std::to_string(o.connections), "-d",
       std::to_string(seconds) + "s", "--timeout", "5s", "--latency", "-s", script, url},
      {}, std::chrono::seconds(seconds + 60));
}

// The edge's own errors by code (sb_edge_errors_total in /metrics).
using ErrorCounts = std::map<std::string, double>;
using ErrorSnapshot = std::function<ErrorCounts()>;

ErrorCounts edge_error_counts(int port, const std::string& token) {
  ErrorCounts out;
  const auto r = http_get(port, "/metrics", token);
  std::istringstream lines(r.body);
  std::string line;
  const std::string name = "sb_edge_errors_total{code=\"";
  while (std::getline(lines, line)) {
    if (line.rfind(name, 0) != 0) continue;
    const auto end = line.find('"', name.size());
    const auto space = line.rfind(' ');
    if (end == std::string::npos || space == std::string::npos) continue;
    out[line.substr(name.size(), end - name.size())] =
        std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

Figures wrk_case(const Options& o, const std::string& dir, const std::string& label,
                 const std::string& url, const ErrorSnapshot& edge_errors = nullptr) {
  Figures f;
  f.label = label;
  std::printf("  ... %s: load average %s, warm-up %d s\n", label.c_str(), loadavg().c_str(),
              o.warmup_s);
  std::fflush(stdout);
  const std::string summary = dir + "/summary.lua";
  std::string warmup_note;
  if (o.warmup_s > 0) {
    // Not counted, but its errors are reported: the first requests after an
    // idle period are where stale pooled connections show.
    auto w = parse_summary(wrk_run(o, url, o.warmup_s, summary).output);
    const double sock = w["connect"] + w["read"] + w["write"] + w["timeout"];
    if (w["status"] > 0 || sock > 0) {
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "      warm-up (not counted): %.0f requests, %.0f errors (>= 400), socket "
                    "errors %.0f/%.0f/%.0f/%.0f\n",
                    w["requests"], w["status"], w["connect"], w["read"], w["write"], w["timeout"]);
      warmup_note = buf;
    }
  }
  const ErrorCounts errors_before = edge_errors ? edge_errors() : ErrorCounts{};
  auto run = wrk_run(o, url, o.duration_s, summary);
  const ErrorCounts errors_after = edge_errors ? edge_errors() : ErrorCounts{};
  auto kv = parse_summary(run.output);
  if (run.status != 0 || kv.empty()) {
    throw std::runtime_error("wrk failed for " + label + " (status " + std::to_string(run.status) +
                             "):\n" + run.output);
  }
  f.ran = true;
  f.requests = static_cast<std::uint64_t>(kv["requests"]);
  // Successful responses only (wrk counts status >= 400 as errors.status).
  f.rps = kv["duration_us"] > 0 ? (kv["requests"] - kv["status"]) / (kv["duration_us"] / 1e6) : 0;
  f.p50_ms = kv["p50_us"] / 1000.0;
  f.p99_ms = kv["p99_us"] / 1000.0;
  f.p90_ms = kv["p90_us"] / 1000.0;
  f.max_ms = kv["max_us"] / 1000.0;
  f.non2xx = static_cast<std::uint64_t>(kv["status"]);
  f.sock_connect = static_cast<std::int64_t>(kv["connect"]);
  f.sock_read = static_cast<std::int64_t>(kv["read"]);
  f.sock_write = static_cast<std::int64_t>(kv["write"]);
  f.sock_timeout = static_cast<std::int64_t>(kv["timeout"]);
  f.notes += warmup_note;
  if (f.non2xx > 0 || f.sock_connect + f.sock_read + f.sock_write + f.sock_timeout > 0) {
    // Which statuses, and what they said: a short second run that parses
    // every response.
    auto diag = wrk_run(o, url, 2, dir + "/status.lua");
    std::istringstream lines(diag.output);
    std::string line;
    for (const auto& [code, n] : errors_after) {
      const auto before = errors_before.count(code) ? errors_before.at(code) : 0.0;
      if (n > before) {
        f.notes += "      the edge answered " + std::to_string(static_cast<long long>(n - before)) +
                   " x " + code + " during the run (sb_edge_errors_total)\n";
      }
    }
    f.notes += "      errors under load; a 2 s diagnostic run counted:\n";
    while (std::getline(lines, line)) {
      if (line.rfind("SBSTATUS ", 0) == 0) f.notes += "        status " + line.substr(9) + "\n";
    }
  }
  return f;
}

// ------------------------------------------------------------------ plain RPC (d)

amqp_bytes_t bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

amqp_table_entry_t str_entry(const char* key, const std::string& value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = bytes(value);
  return e;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<std::int64_t> int_header(const amqp_table_t& t, std::string_view key) {
  for (int i = 0; i < t.num_entries; ++i) {
    const auto& e = t.entries[i];
    if (std::string_view(static_cast<const char*>(e.key.bytes), e.key.len) != key) continue;
    switch (e.value.kind) {
      case AMQP_FIELD_KIND_I8:
        return e.value.value.i8;
      case AMQP_FIELD_KIND_U8:
        return e.value.value.u8;
      case AMQP_FIELD_KIND_I16:
        return e.value.value.i16;
      case AMQP_FIELD_KIND_U16:
        return e.value.value.u16;
      case AMQP_FIELD_KIND_I32:
        return e.value.value.i32;
      case AMQP_FIELD_KIND_U32:
        return e.value.value.u32;
      case AMQP_FIELD_KIND_I64:
        return e.value.value.i64;
      case AMQP_FIELD_KIND_U64:
        return static_cast<std::int64_t>(e.value.value.u64);
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        return std::strtoll(std::string(static_cast<const char*>(e.value.value.bytes.bytes),
                                        e.value.value.bytes.len)
                                .c_str(),
                            nullptr, 10);
      default:
        return std::nullopt;
    }
  }
  return std::nullopt;
}

bool has_header(const amqp_table_t& t, std::string_view key) {
  for (int i = 0; i < t.num_entries; ++i) {
    const auto& k = t.entries[i].key;
    if (std::string_view(static_cast<const char*>(k.bytes), k.len) == key) return true;
  }
  return false;
}

/// `in_flight` calls kept outstanding on one connection, one thread, direct
/// reply-to; each call is the message the edge sends for a routed GET
/// (docs/protocol.md 9.1: its headers, message_id = the request id, and the
/// validated user_id every platform publisher sets, 11.6). Counted: replies
/// whose x-sb-status is 200.
Figures plain_rpc(const Options& o, const std::string& label, const std::string& routing_key,
                  const std::string& path) {
  Figures f;
  f.label = label;
  std::printf("  ... %s: load average %s, warm-up %d s\n", label.c_str(), loadavg().c_str(),
              o.warmup_s);
  std::fflush(stdout);
  sb::bench::RawConnection r(o.amqp_url, false);
  amqp_basic_consume(r.c, 1, amqp_cstring_bytes("amq.rabbitmq.reply-to"), amqp_empty_bytes, 0, 1, 0,
                     amqp_empty_table);
  sb::bench::RawConnection::check(amqp_get_rpc_reply(r.c), "consume amq.rabbitmq.reply-to");

  constexpr std::int64_t kTimeoutMs = 30000;
  const std::string expiration = std::to_string(kTimeoutMs);
  const std::string kind = "request", method = "GET", empty, actor = "anonymous", params = "{}",
                    http_headers = "{}", client_address = "127.0.0.1";
  const std::string user = sb::broker::login_user(o.amqp_url);
  const std::string trace_prefix = "00-" + random_hex(16);
  struct Slot {
    std::uint64_t seq = 0;
    Clock::time_point started;
    bool busy = false;
  };
  const auto n = static_cast<std::size_t>(std::max(1, o.connections));
  std::vector<Slot> slots(n);
  std::uint64_t next_seq = 0;
  std::uint64_t returned = 0, failed = 0, ok_in_window = 0, non2xx = 0;
  std::vector<double> latencies_ms;
  latencies_ms.reserve(200000);

  auto send = [&](std::size_t slot) {
    auto& s = slots[slot];
    s.seq = ++next_seq;
    s.busy = true;
    const std::string corr = std::to_string(slot) + ":" + std::to_string(s.seq);
    const std::string request_id = "bench-" + std::to_string(s.seq);
    char span[17];
    std::snprintf(span, sizeof span, "%016" PRIx64, s.seq);
    const std::string traceparent = trace_prefix + random_hex(16) + "-" + span + "-01";
    amqp_table_entry_t h[15];
    h[0] = str_entry("x-sb-kind", kind);
    h[1].key = amqp_cstring_bytes("x-sb-deadline");
    h[1].value.kind = AMQP_FIELD_KIND_I64;
    h[1].value.value.i64 = wall_ms() + kTimeoutMs;
    h[2] = str_entry("x-sb-request-id", request_id);
    h[3] = str_entry("x-correlation-id", request_id);
    h[4] = str_entry("traceparent", traceparent);
    h[5] = str_entry("x-sb-tenant", empty);
    h[6] = str_entry("x-sb-actor", actor);
    h[7] = str_entry("x-sb-roles", empty);
    h[8] = str_entry("x-sb-method", method);
    h[9] = str_entry("x-sb-path", path);
    h[10] = str_entry("x-sb-route", path);
    h[11] = str_entry("x-sb-params", params);
    h[12] = str_entry("x-sb-query", empty);
    h[13] = str_entry("x-sb-http-headers", http_headers);
    h[14] = str_entry("x-sb-client-address", client_address);
    amqp_basic_properties_t p{};
    p._flags = AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
               AMQP_BASIC_EXPIRATION_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_USER_ID_FLAG;
    p.message_id = bytes(request_id);
    p.user_id = bytes(user);
    p.correlation_id = bytes(corr);
    p.reply_to = amqp_cstring_bytes("amq.rabbitmq.reply-to");
    p.expiration = bytes(expiration);
    p.delivery_mode = 1;
    p.headers.num_entries = 15;
    p.headers.entries = h;
    s.started = Clock::now();
    if (amqp_basic_publish(r.c, 1, amqp_cstring_bytes("sb.rpc"), bytes(routing_key), 1, 0, &p,
                           amqp_empty_bytes) != AMQP_STATUS_OK) {
      throw std::runtime_error("plain rpc: publish failed");
    }
  };
  // Which slot a correlation id names, if it is that slot's current call.
  auto slot_of = [&](const amqp_bytes_t& id) -> std::optional<std::size_t> {
    const std::string s(static_cast<const char*>(id.bytes), id.len);
    const auto colon = s.find(':');
    if (colon == std::string::npos) return std::nullopt;
    const auto slot = std::strtoull(s.c_str(), nullptr, 10);
    const auto seq = std::strtoull(s.c_str() + colon + 1, nullptr, 10);
    if (slot >= n || !slots[slot].busy || slots[slot].seq != seq) return std::nullopt;
    return static_cast<std::size_t>(slot);
  };

  const auto t0 = Clock::now();
  const auto from = t0 + std::chrono::seconds(o.warmup_s);
  const auto until = from + std::chrono::seconds(o.duration_s);
  const auto drain_until = until + 5s;
  for (std::size_t i = 0; i < n; ++i) send(i);
  std::size_t busy = n;
  while (busy > 0) {
    check_stop();
    const auto now = Clock::now();
    if (now > drain_until) break;
    amqp_maybe_release_buffers(r.c);
    amqp_envelope_t env;
    timeval tv{0, 100000};
    const amqp_rpc_reply_t res = amqp_consume_message(r.c, &env, &tv, 0);
    if (res.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        res.library_error == AMQP_STATUS_TIMEOUT) {
      continue;
    }
    if (res.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        res.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      // Not a delivery: a basic.return (no consumer for the key) or a close.
      amqp_frame_t frame;
      if (amqp_simple_wait_frame(r.c, &frame) != AMQP_STATUS_OK) {
        throw std::runtime_error("plain rpc: connection lost");
      }
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      if (frame.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
        amqp_message_t msg;
        const auto rr = amqp_read_message(r.c, frame.channel, &msg, 0);
        if (rr.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("plain rpc: return");
        ++returned;
        const auto slot = slot_of(msg.properties.correlation_id);
        amqp_destroy_message(&msg);
        if (slot) {
          slots[*slot].busy = false;
          --busy;
          if (Clock::now() < until) {
            send(*slot);
            ++busy;
          }
        }
        continue;
      }
      if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
          frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
        throw std::runtime_error("plain rpc: the broker closed the channel");
      }
      continue;
    }
    if (res.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error("plain rpc: consume");
    const auto done = Clock::now();
    const auto& props = env.message.properties;
    const auto slot = slot_of(props.correlation_id);
    bool good = true;
    if ((props._flags & AMQP_BASIC_HEADERS_FLAG) != 0) {
      if (has_header(props.headers, "x-sb-rpc-error")) good = false;
      if (int_header(props.headers, "x-sb-status").value_or(200) != 200) good = false;
    }
    amqp_destroy_envelope(&env);
    if (!slot) continue;
    auto& s = slots[*slot];
    s.busy = false;
    --busy;
    if (!good) ++failed;
    if (s.started >= from && done <= until) {
      if (good) {
        ++ok_in_window;
        latencies_ms.push_back(std::chrono::duration<double, std::milli>(done - s.started).count());
      } else {
        ++non2xx;
      }
    }
    if (done < until) {
      send(*slot);
      ++busy;
    }
  }
  f.ran = true;
  f.requests = ok_in_window + non2xx;
  f.non2xx = non2xx;
  f.rps = static_cast<double>(ok_in_window) / static_cast<double>(o.duration_s);
  f.p50_ms = sb::bench::percentile(latencies_ms, 50);
  f.p99_ms = sb::bench::percentile(latencies_ms, 99);
  f.p90_ms = sb::bench::percentile(latencies_ms, 90);
  f.max_ms = sb::bench::percentile(latencies_ms, 100);
  if (returned > 0 || failed > 0 || busy > 0) {
    f.notes += "      " + std::to_string(returned) + " returned unroutable, " +
               std::to_string(failed) + " error replies, " + std::to_string(busy) +
               " unanswered at the end\n";
  }
  return f;
}

// ------------------------------------------------------------------ nginx

std::string nginx_config(const std::string& dir, int port, const std::string& upstream) {
  std::string c;
  c += "# Generated by bench_edge: nginx proxy_pass with a keep-alive upstream.\n";
  c += "worker_processes auto;\ndaemon off;\nmaster_process on;\n";
  c += "pid " + dir + "/nginx.pid;\n";
  c += "error_log " + dir + "/nginx-error.log warn;\n";
  c += "events { worker_connections 4096; }\n";
  c += "http {\n";
  c += "  access_log off;\n";
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) {
    c += std::string("  ") + t + "_temp_path " + dir + "/nginx-tmp/" + t + ";\n";
  }
  c += "  keepalive_timeout 65s;\n  keepalive_requests 1000000;\n";
  c += "  upstream plugin {\n    server " + upstream + ";\n";
  c += "    keepalive 64;\n    keepalive_requests 1000000;\n    keepalive_timeout 60s;\n  }\n";
  c += "  server {\n    listen 127.0.0.1:" + std::to_string(port) + ";\n";
  c += "    location / {\n      proxy_pass http://plugin;\n      proxy_http_version 1.1;\n";
  c += "      proxy_set_header Connection \"\";\n    }\n  }\n}\n";
  return c;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
}

// ------------------------------------------------------------------ main

int usage() {
  std::fprintf(stderr,
               "usage: bench_edge AMQP_URL POSTGRES_URL REDIS_URL [--build DIR] [--duration S] "
               "[--warmup S] [--connections N] [--wrk-threads N] [--edge-threads N] "
               "[--rounds N] [--edge-loops N] [--edge-rpc-connections N] [--plugin-http-threads N] "
               "[--only abcd] [--keep]\n");
  return 2;
}

// The round with the median req/s (empty when the case did not run).
Figures median_of(std::vector<Figures> v) {
  if (v.empty()) return Figures{};
  std::sort(v.begin(), v.end(), [](const Figures& x, const Figures& y) { return x.rps < y.rps; });
  return v[v.size() / 2];
}

void print_ratio(const char* what, const Figures& num, const Figures& den, double goal) {
  if (!num.ran || !den.ran || den.rps <= 0) return;
  const double ratio = num.rps / den.rps;
  std::printf("  %-50s %6.3f   goal >= %.1f  %s\n", what, ratio, goal,
              ratio >= goal ? "met" : "NOT MET");
}

int run(const Options& o) {
  std::printf("bench_edge: the edge vs nginx and plain rabbitmq-c (same run, same servers)\n");
  std::printf("load average before: %s (%u cores)\n", loadavg().c_str(),
              std::thread::hardware_concurrency());
  std::printf(
      "%d connections / calls in flight, wrk %d threads, %d s warm-up then %d s measured per "
      "case, %d alternating rounds\n",
      o.connections, o.wrk_threads, o.warmup_s, o.duration_s, o.rounds);
  std::fflush(stdout);

  const std::string dir = make_work_dir("edge");
  chmod(dir.c_str(), 0755);  // nginx workers run as nobody
  fs::create_directories(dir + "/nginx-tmp");
  write_file(dir + "/summary.lua", kSummaryLua);
  write_file(dir + "/status.lua", kStatusLua);

  return run_with_stack(dir, o.keep, [&](Stack& stack) {
    const std::string b = o.build_dir;
    const std::string secret = random_hex(48);
    const std::map<std::string, std::string> common = {{"SB_CONFIG", ""}, {"SB_LOG_LEVEL", "warn"}};
    auto with = [&](std::map<std::string, std::string> extra) {
      extra.insert(common.begin(), common.end());
      return extra;
    };
    stack.start("sb-store", {b + "/services/store/sb-store"},
                with({{"SB_POSTGRES_URL", o.postgres_url},
                      {"SB_RABBITMQ_URL", o.amqp_url},
                      {"SB_HTTP_PORT", "0"}}),
                "store.log");
    stack.start("sb-registry", {b + "/services/registry/sb-registry"},
                with({{"SB_POSTGRES_URL", o.postgres_url},
                      {"SB_RABBITMQ_URL", o.amqp_url},
                      {"SB_HTTP_PORT", "0"}}),
                "registry.log");
    const int edge_port = free_port();
    const auto edge_env = with({{"SB_RABBITMQ_URL", o.amqp_url},
                                {"SB_REDIS_URL", o.redis_url},
                                {"SB_HTTP_PORT", std::to_string(edge_port)},
                                {"SB_AUTH_JWT_SECRET", secret},
                                {"SB_HTTP_THREADS", std::to_string(o.edge_threads)},
                                {"SB_HTTP_LOOPS", std::to_string(o.edge_loops)},
                                {"SB_EDGE_RPC_CONNECTIONS", std::to_string(o.edge_rpc)}});
    stack.start("sb-edge", {b + "/services/edge/sb-edge"}, edge_env, "edge.log");
    const std::string plugin = b + "/tests/support/plugin/sb-test-plugin";
    stack.start("sb-test-plugin benchamqp", {plugin},
                with({{"SB_RABBITMQ_URL", o.amqp_url},
                      {"SB_POSTGRES_URL", o.postgres_url},
                      {"SB_HTTP_PORT", "0"},
                      {"SB_PLUGIN_NAME", "benchamqp"},
                      {"SB_PLUGIN_VERSION", "1.0.0"},
                      {"SB_PLUGIN_TRANSPORT", "amqp"}}),
                "plugin-amqp.log");
    stack.start("sb-test-plugin benchhttp", {plugin},
                with({{"SB_RABBITMQ_URL", o.amqp_url},
                      {"SB_POSTGRES_URL", o.postgres_url},
                      {"SB_HTTP_PORT", "0"},
                      {"SB_PLUGIN_NAME", "benchhttp"},
                      {"SB_PLUGIN_VERSION", "1.0.0"},
                      {"SB_PLUGIN_TRANSPORT", "http"},
                      {"SB_PLUGIN_HTTP_PORT", "0"},
                      {"SB_PLUGIN_HTTP_THREADS", std::to_string(o.plugin_http_threads)}}),
                "plugin-http.log");

    const auto started = Clock::now();
    stack.wait_until("the edge's GET /ready to answer 200", 60s,
                     [&] { return http_get(edge_port, "/ready").status == 200; });
    const std::string jwt = mint_jwt(b + "/services/edge/sb-edge", edge_env);
    std::string base_url;
    stack.wait_until("benchamqp and benchhttp in the edge's GET /api/v1/services", 90s, [&] {
      const auto r = http_get(edge_port, "/api/v1/services", jwt);
      if (r.status != 200) return false;
      auto amqp = live_instance(r.body, "benchamqp", "1.0.0");
      auto http = live_instance(r.body, "benchhttp", "1.0.0");
      if (!amqp || !http || *http == "amqp") return false;
      base_url = *http;
      return true;
    });
    const std::string url_a =
        "http://127.0.0.1:" + std::to_string(edge_port) + "/api/benchamqp/public/ping";
    const std::string url_b =
        "http://127.0.0.1:" + std::to_string(edge_port) + "/api/benchhttp/public/ping";
    stack.wait_until("the edge to route GET /api/benchamqp/public/ping", 30s, [&] {
      return http_get(edge_port, "/api/benchamqp/public/ping").status == 200;
    });
    stack.wait_until("the edge to route GET /api/benchhttp/public/ping", 30s, [&] {
      return http_get(edge_port, "/api/benchhttp/public/ping").status == 200;
    });

    const std::string prefix = "http://";
    if (base_url.rfind(prefix, 0) != 0) throw std::runtime_error("odd base_url " + base_url);
    std::string upstream = base_url.substr(prefix.size());
    if (const auto slash = upstream.find('/'); slash != std::string::npos) {
      throw std::runtime_error("base_url with a path is not supported here: " + base_url);
    }
    const int nginx_port = free_port();
    write_file(dir + "/nginx.conf", nginx_config(dir, nginx_port, upstream));
    stack.start("nginx",
                {o.nginx, "-p", dir, "-c", dir + "/nginx.conf", "-e", dir + "/nginx-error.log"}, {},
                "nginx.log");
    stack.wait_until("nginx to proxy GET /public/ping", 20s,
                     [&] { return http_get(nginx_port, "/public/ping").status == 200; });
    const std::string url_c = "http://127.0.0.1:" + std::to_string(nginx_port) + "/public/ping";
    std::printf("stack ready in %.1f s (work dir %s); plugin HTTP instance %s\n\n",
                std::chrono::duration<double>(Clock::now() - started).count(), dir.c_str(),
                base_url.c_str());

    // Pairs side by side: (d) then (a) on the AMQP instance, (b) then (c)
    // on the HTTP instance; rounds alternate them, so that load from
    // elsewhere on the box falls on both sides of each ratio, and the ratios
    // are of the medians.
    const ErrorSnapshot edge_errors = [&] { return edge_error_counts(edge_port, jwt); };
    std::vector<Figures> as, bs, cs, ds;
    for (int round = 1; round <= o.rounds; ++round) {
      const std::string suffix = o.rounds > 1 ? " #" + std::to_string(round) : "";
      if (o.runs('d')) {
        ds.push_back(plain_rpc(
            o, "(d) plain rabbitmq-c RPC, " + std::to_string(o.connections) + " in flight" + suffix,
            "benchamqp.1.0.0", "/public/ping"));
        stack.check_alive();
      }
      if (o.runs('a')) {
        as.push_back(
            wrk_case(o, dir, "(a) edge -> AMQP RPC -> plugin" + suffix, url_a, edge_errors));
        stack.check_alive();
      }
      if (o.runs('b')) {
        bs.push_back(
            wrk_case(o, dir, "(b) edge -> HTTP upstream -> plugin" + suffix, url_b, edge_errors));
        stack.check_alive();
      }
      if (o.runs('c')) {
        cs.push_back(wrk_case(o, dir, "(c) nginx proxy_pass -> plugin" + suffix, url_c));
        stack.check_alive();
      }
    }
    std::printf("\nload average after: %s\n", loadavg().c_str());
    print_header();
    for (const auto* v : {&as, &bs, &cs, &ds}) {
      for (const auto& f : *v) print_figures(f);
    }
    const Figures a = median_of(as), b_ = median_of(bs), c = median_of(cs), d = median_of(ds);
    if (o.rounds > 1) {
      std::printf("  medians (by req/s; latencies of that round):\n");
      for (const Figures* f : {&a, &b_, &c, &d}) {
        if (f->ran) print_figures(*f);
      }
    }
    std::printf(
        "  req/s counts successes only; errors: wrk's \"Non-2xx or 3xx responses\" (status >= "
        "400),\n  for (d) replies with x-sb-status != 200 or x-sb-rpc-error; latency of (d): "
        "publish to reply\n");
    std::printf("\nratios (req/s)\n");
    print_ratio("(b)/(c) edge HTTP upstream / nginx proxy_pass", b_, c, 1.0);
    print_ratio("(a)/(d) edge AMQP RPC / plain rabbitmq-c RPC", a, d, 0.8);
    std::printf(
        "\nbaselines measured earlier on this box (shared/STACK.md): nginx proxy_pass -> "
        "nginx ~41-45k req/s;\ntuned cpp-httplib alone ~49k; one RPC caller ~3k calls/s; "
        "broker ~74 us CPU/message (AMQP mode bound ~8k/s)\n");
    std::printf("\nprocess logs (all run at level warn):\n");
    stack.print_log_summary(26);
  });
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  auto int_arg = [&](int& i, int& out) {
    if (i + 1 >= argc) return false;
    out = std::atoi(argv[++i]);
    return out > 0 || (out == 0 && std::string(argv[i]) == "0");
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    bool ok = true;
    if (a == "--build" && i + 1 < argc) {
      o.build_dir = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      o.only = argv[++i];
    } else if (a == "--wrk" && i + 1 < argc) {
      o.wrk = argv[++i];
    } else if (a == "--nginx" && i + 1 < argc) {
      o.nginx = argv[++i];
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--duration") {
      ok = int_arg(i, o.duration_s) && o.duration_s > 0;
    } else if (a == "--warmup") {
      ok = int_arg(i, o.warmup_s);
    } else if (a == "--connections") {
      ok = int_arg(i, o.connections) && o.connections > 0;
    } else if (a == "--wrk-threads") {
      ok = int_arg(i, o.wrk_threads) && o.wrk_threads > 0;
    } else if (a == "--edge-threads") {
      ok = int_arg(i, o.edge_threads) && o.edge_threads > 0;
    } else if (a == "--rounds") {
      ok = int_arg(i, o.rounds) && o.rounds > 0;
    } else if (a == "--edge-loops") {
      ok = int_arg(i, o.edge_loops) && o.edge_loops > 0;
    } else if (a == "--edge-rpc-connections") {
      ok = int_arg(i, o.edge_rpc) && o.edge_rpc > 0;
    } else if (a == "--plugin-http-threads") {
      ok = int_arg(i, o.plugin_http_threads) && o.plugin_http_threads > 0;
    } else if (a.rfind("--", 0) == 0) {
      ok = false;
    } else {
      positional.push_back(a);
    }
    if (!ok) return usage();
  }
  if (positional.size() != 3) return usage();
  o.amqp_url = positional[0];
  o.postgres_url = positional[1];
  o.redis_url = positional[2];
  if (o.wrk_threads > o.connections) o.wrk_threads = o.connections;

  sb::bench::install_stop_handlers();
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_edge: %s\n", e.what());
    return 1;
  }
}

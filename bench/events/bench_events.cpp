// Events over HTTP (issue 7), measured on the real processes in one run:
//
//   (a) NDJSON export: GET /api/v1/events (Accept: application/x-ndjson) of
//       N seeded events through sb-edge, read by a plain-socket client as
//       fast as it can; events/s
//   (b) the baseline: the same rows read straight from PostgreSQL in the same
//       run, `SELECT <kEventColumns> FROM events WHERE position > $1 ORDER BY
//       position LIMIT 1000` in a loop, each row decoded (event_from_row) and
//       serialised (to_json + '\n') as the edge does; events/s
//       -> ratio (a)/(b), goal >= 0.5; (a) and (b) alternate for R rounds
//   (c) SSE fan-out: C clients on GET /api/v1/events/stream, events appended
//       one per store.append at a steady rate; latency = frame arrival -
//       the event's recorded_at (and, for reference, - the append's reply);
//       p50/p99/max; frames missing/duplicated/unexpected per client
//   (d) NDJSON export of the N events to a slow reader (paced to take ~S s):
//       the edge's VmRSS sampled before/during/after and its VmHWM (reset
//       first through /proc/<pid>/clear_refs); peak growth beside the 20 MB
//       goal. A measurement, printed, not an assertion.
//
// It starts sb-store (with its test event types) and sb-edge from a build
// directory in a temp folder, against the RabbitMQ, PostgreSQL and Redis it
// is given; seeds N events through store.append (500 per append); stops every
// child process at the end, also on failure or interruption.
//
// Usage: bench_events AMQP_URL POSTGRES_URL REDIS_URL [--build DIR]
//          [--events N] [--rounds R] [--sse-clients C] [--sse-rate R]
//          [--sse-seconds S] [--slow-seconds S] [--slow-read-kb K]
//          [--only abcd] [--keep]

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <rapidjson/document.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "procs.hpp"
#include "raw_amqp.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/pg.hpp"

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
  std::int64_t events = 100000;
  int rounds = 3;
  int sse_clients = 100;
  int sse_rate = 200;
  int sse_seconds = 10;
  int slow_seconds = 25;
  int slow_read_kb = 64;
  std::string only = "abcd";
  bool keep = false;
  bool runs(char c) const { return only.find(c) != std::string::npos; }
};

// ------------------------------------------------------------------ helpers

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ------------------------------------------------------------------ HTTP over a plain socket

/// Decodes an HTTP/1.1 chunked body.
class Dechunker {
 public:
  bool done() const { return state_ == State::done; }
  void feed(const char* p, std::size_t n, std::string& out) {
    std::size_t i = 0;
    while (i < n && state_ != State::done) {
      switch (state_) {
        case State::size: {
          const char c = p[i++];
          if (c == '\n') {
            left_ = std::strtoull(line_.c_str(), nullptr, 16);
            line_.clear();
            state_ = left_ == 0 ? State::trailer : State::data;
          } else {
            line_ += c;
          }
          break;
        }
        case State::data: {
          const std::size_t k = std::min(left_, n - i);
          out.append(p + i, k);
          i += k;
          left_ -= k;
          if (left_ == 0) state_ = State::data_end;
          break;
        }
        case State::data_end:
          if (p[i++] == '\n') state_ = State::size;
          break;
        case State::trailer: {
          const char c = p[i++];
          if (c == '\n') {
            if (line_.empty() || line_ == "\r") state_ = State::done;
            line_.clear();
          } else {
            line_ += c;
          }
          break;
        }
        case State::done:
          break;
      }
    }
  }

 private:
  enum class State { size, data, data_end, trailer, done };
  State state_ = State::size;
  std::string line_;
  std::size_t left_ = 0;
};

/// One GET on its own connection, read with blocking recv calls by the
/// caller (so a caller can pace its reads). The body is handed out decoded.
class HttpStream {
 public:
  HttpStream(int port, const std::string& target, const std::vector<std::string>& headers,
             int rcvbuf = 0, std::chrono::seconds timeout = 60s) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    if (rcvbuf > 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      const int e = errno;
      close(fd_);
      throw std::runtime_error(std::string("connect failed: ") + std::strerror(e));
    }
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    for (const auto& h : headers) req += h + "\r\n";
    req += "\r\n";
    std::size_t sent = 0;
    while (sent < req.size()) {
      const ssize_t n = send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        close(fd_);
        throw std::runtime_error("send failed");
      }
      sent += static_cast<std::size_t>(n);
    }
    // The status line and headers; what follows them is body.
    std::string head;
    char buf[4096];
    std::size_t end = std::string::npos;
    while (end == std::string::npos) {
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        close(fd_);
        throw std::runtime_error("no response (connection closed or timed out) for " + target);
      }
      head.append(buf, static_cast<std::size_t>(n));
      end = head.find("\r\n\r\n");
    }
    pending_ = head.substr(end + 4);
    head.resize(end);
    if (head.size() > 12) status_ = std::atoi(head.c_str() + 9);
    std::string lower;
    for (char c : head) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    chunked_ = lower.find("transfer-encoding: chunked") != std::string::npos;
    if (auto at = lower.find("content-length:"); at != std::string::npos) {
      length_ = std::strtoll(lower.c_str() + at + 15, nullptr, 10);
    }
  }
  ~HttpStream() {
    if (fd_ >= 0) close(fd_);
  }
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  int status() const { return status_; }

  /// One recv of at most `max` bytes (after what came with the headers);
  /// appends the decoded body bytes to `out`. False at the end of the body or
  /// of the connection. Throws on a receive timeout.
  bool read_some(std::string& out, std::size_t max = 65536) {
    if (!pending_.empty()) {
      std::string p;
      p.swap(pending_);
      consume(p.data(), p.size(), out);
      return !finished();
    }
    if (finished()) return false;
    if (buf_.size() < max) buf_.resize(max);
    const ssize_t n = recv(fd_, buf_.data(), max, 0);
    if (n < 0) {
      if (errno == EINTR) return true;
      if (errno == EAGAIN || errno == EWOULDBLOCK) throw std::runtime_error("read timed out");
      eof_ = true;
      return false;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    wire_bytes_ += static_cast<std::uint64_t>(n);
    consume(buf_.data(), static_cast<std::size_t>(n), out);
    return !finished();
  }

  /// From another thread: wakes a blocked read_some (which then returns false).
  void shutdown_now() { ::shutdown(fd_, SHUT_RDWR); }
  /// The body ended as HTTP says it should (not a cut connection).
  bool complete() const { return chunked_ ? dechunker_.done() : (length_ >= 0 && got_ >= length_); }
  std::uint64_t wire_bytes() const { return wire_bytes_; }

 private:
  bool finished() const { return eof_ || complete(); }
  void consume(const char* p, std::size_t n, std::string& out) {
    if (chunked_) {
      dechunker_.feed(p, n, out);
    } else {
      out.append(p, n);
      got_ += static_cast<std::int64_t>(n);
    }
  }

  int fd_ = -1;
  int status_ = 0;
  bool chunked_ = false;
  bool eof_ = false;
  std::int64_t length_ = -1;
  std::int64_t got_ = 0;
  std::uint64_t wire_bytes_ = 0;
  std::string pending_;
  std::vector<char> buf_;
  Dechunker dechunker_;
};

/// A whole small GET (status, body).
std::pair<int, std::string> http_get(int port, const std::string& target,
                                     const std::vector<std::string>& headers = {}) {
  try {
    HttpStream s(port, target, headers, 0, 5s);
    std::string body;
    while (s.read_some(body)) {
    }
    return {s.status(), body};
  } catch (const std::exception&) {
    return {-1, ""};
  }
}

/// The NDJSON lines of a body, counted and checked as they arrive: each
/// line's `position` must follow the previous one.
struct NdjsonCheck {
  std::string rest;
  std::int64_t lines = 0;
  std::int64_t first = -1;
  std::int64_t last = -1;
  std::int64_t out_of_order = 0;  // position <= the previous
  std::int64_t gaps = 0;          // position > previous + 1
  std::int64_t unparsed = 0;
  std::uint64_t bytes = 0;

  void feed(std::string& data) {
    bytes += data.size();
    rest += data;
    data.clear();
    std::size_t start = 0;
    while (true) {
      const auto nl = rest.find('\n', start);
      if (nl == std::string::npos) break;
      line(std::string_view(rest).substr(start, nl - start));
      start = nl + 1;
    }
    rest.erase(0, start);
  }
  void line(std::string_view l) {
    ++lines;
    const auto at = l.find("\"position\":");
    if (at == std::string_view::npos) {
      ++unparsed;
      return;
    }
    const std::int64_t p = std::strtoll(l.data() + at + 11, nullptr, 10);
    if (first < 0) first = p;
    if (last >= 0 && p <= last) ++out_of_order;
    if (last >= 0 && p > last + 1) ++gaps;
    last = p;
  }
};

// ------------------------------------------------------------------ /proc

/// A "VmRSS"/"VmHWM" line of /proc/<pid>/status, in kB (-1: unreadable).
std::int64_t proc_status_kb(pid_t pid, const char* key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(f, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtoll(line.c_str() + prefix.size(), nullptr, 10);
  }
  return -1;
}

/// Resets VmHWM to the current RSS (Linux >= 4.0, "5" to clear_refs).
bool reset_hwm(pid_t pid) {
  std::ofstream f("/proc/" + std::to_string(pid) + "/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

double mb(std::int64_t kb) {
  return static_cast<double>(kb) / 1024.0;
}

// ------------------------------------------------------------------ appends

std::string event_data(std::int64_t i) {
  // ~250 bytes of data, a little varied.
  return R"({"order":"o-)" + std::to_string(i) +
         R"(","sku":"SKU-12345","qty":3,"price":1999,"currency":"EUR","customer":{"id":"c-)" +
         std::to_string(i % 977) +
         R"(","segment":"retail","country":"DE"},"lines":[{"sku":"SKU-1","qty":1},{"sku":"SKU-2","qty":2}],"note":"benchmark event data for the NDJSON export and the SSE tail"})";
}

std::string append_body(const std::string& stream, const std::string& type, std::int64_t first,
                        int count) {
  std::string body = R"({"stream":")" + stream + R"(","tenant":"bench","events":[)";
  const auto at = sb::events::format_rfc3339_ms(sb::events::now_ms());
  for (int i = 0; i < count; ++i) {
    if (i > 0) body += ',';
    body += R"({"id":")" + sb::events::uuid_v4().to_string() + R"(","type":")" + type +
            R"(","occurred_at":")" + at + R"(","data":)" + event_data(first + i) + "}";
  }
  body += "]}";
  return body;
}

/// The positions of an "appended" reply; throws with the reply otherwise.
std::vector<std::int64_t> appended_positions(const std::string& reply) {
  rapidjson::Document d;
  d.Parse(reply.data(), reply.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("result") || !d.HasMember("positions") ||
      !d["positions"].IsArray()) {
    throw std::runtime_error("store.append answered: " + reply.substr(0, 400));
  }
  std::vector<std::int64_t> out;
  for (const auto& p : d["positions"].GetArray()) out.push_back(p.GetInt64());
  return out;
}

sb::broker::Message message(std::string body) {
  sb::broker::Message m;
  m.body = std::move(body);
  return m;
}

struct Seeded {
  std::int64_t first = 0;
  std::int64_t last = 0;
  std::int64_t count = 0;
  double seconds = 0;
};

/// N events of test.thing.happened, 500 per append, 4 appends in flight,
/// one stream per append.
Seeded seed(sb::broker::RpcClient& rpc, std::int64_t n) {
  constexpr int kPerAppend = 500;
  constexpr std::size_t kInFlight = 4;
  Seeded s;
  s.first = INT64_MAX;
  const auto t0 = Clock::now();
  std::vector<std::future<sb::broker::Message>> inflight;
  std::int64_t queued = 0;
  std::int64_t k = 0;
  auto collect = [&](std::future<sb::broker::Message>& f) {
    for (auto p : appended_positions(f.get().body)) {
      s.first = std::min(s.first, p);
      s.last = std::max(s.last, p);
      ++s.count;
    }
  };
  while (queued < n || !inflight.empty()) {
    check_stop();
    while (queued < n && inflight.size() < kInFlight) {
      const int count = static_cast<int>(std::min<std::int64_t>(kPerAppend, n - queued));
      inflight.push_back(rpc.call("store.append",
                                  message(append_body("bench-export-" + std::to_string(k++),
                                                      "test.thing.happened", queued, count)),
                                  30s));
      queued += count;
    }
    collect(inflight.front());
    inflight.erase(inflight.begin());
  }
  s.seconds = seconds_since(t0);
  return s;
}

// ------------------------------------------------------------------ (a) and (b)

struct Export {
  std::int64_t events = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(events) / seconds : 0; }
  std::string problems;
};

std::string export_target(const Seeded& s) {
  return "/api/v1/events?from_position=" + std::to_string(s.first) +
         "&to_position=" + std::to_string(s.last);
}

std::vector<std::string> export_headers(const std::string& jwt) {
  return {"Authorization: Bearer " + jwt, "Accept: application/x-ndjson"};
}

std::string check_lines(const NdjsonCheck& c, const Seeded& s, bool complete, int status) {
  std::string p;
  if (status != 200) p += " status " + std::to_string(status) + ";";
  if (!complete) p += " body cut short;";
  if (c.lines != s.count) {
    p += " " + std::to_string(c.lines) + " lines, expected " + std::to_string(s.count) + ";";
  }
  if (c.first != s.first || c.last != s.last) {
    p += " positions " + std::to_string(c.first) + ".." + std::to_string(c.last) + ", expected " +
         std::to_string(s.first) + ".." + std::to_string(s.last) + ";";
  }
  if (c.out_of_order > 0) p += " " + std::to_string(c.out_of_order) + " out of order;";
  if (c.gaps > 0) p += " " + std::to_string(c.gaps) + " gaps;";
  if (c.unparsed > 0) p += " " + std::to_string(c.unparsed) + " lines without a position;";
  if (!c.rest.empty()) p += " an unterminated last line;";
  return p;
}

Export edge_export(int port, const std::string& jwt, const Seeded& s) {
  Export e;
  const auto t0 = Clock::now();
  HttpStream h(port, export_target(s), export_headers(jwt));
  NdjsonCheck c;
  std::string data;
  while (true) {
    const bool more = h.read_some(data, 256 * 1024);
    c.feed(data);
    if (!more) break;
  }
  e.seconds = seconds_since(t0);
  e.events = c.lines;
  e.bytes = c.bytes;
  e.problems = check_lines(c, s, h.complete(), h.status());
  return e;
}

/// The baseline: the same rows straight from PostgreSQL, decoded and
/// serialised as the edge does, page by page.
Export pg_export(sb::pg::Connection& c, const Seeded& s) {
  Export e;
  const std::string sql = std::string("SELECT ") + sb::events::kEventColumns +
                          " FROM events WHERE position > $1 ORDER BY position LIMIT 1000";
  const auto t0 = Clock::now();
  std::int64_t after = s.first - 1;
  std::int64_t previous = after;
  std::int64_t gaps = 0;
  std::string buf;
  while (after < s.last) {
    auto rows = c.exec(sb::pg::Sql::trusted(sql), {after});
    if (rows.empty()) break;
    buf.clear();
    for (const auto& row : rows) {
      auto ev = sb::events::event_from_row(row);
      const auto p = ev.position.value();
      if (p > s.last) {
        after = s.last;
        break;
      }
      buf += sb::events::to_json(ev);
      buf += '\n';
      if (p != previous + 1) ++gaps;
      previous = p;
      after = p;
      ++e.events;
    }
    e.bytes += buf.size();
  }
  e.seconds = seconds_since(t0);
  if (e.events != s.count) {
    e.problems +=
        " " + std::to_string(e.events) + " rows, expected " + std::to_string(s.count) + ";";
  }
  if (gaps > 0) e.problems += " " + std::to_string(gaps) + " gaps;";
  return e;
}

/// The plan PostgreSQL picks for a query, as its node names ("Limit > Index
/// Scan using events_pkey on events").
std::string plan_of(sb::pg::Connection& c, const std::string& sql) {
  std::string out;
  for (const auto& row : c.exec(sb::pg::Sql::trusted("EXPLAIN " + sql))) {
    const std::string line(row[0].text());
    auto from = line.find_first_not_of(' ');
    if (from == std::string::npos) continue;
    if (line.compare(from, 4, "->  ") == 0) from += 4;
    const auto to = line.find("  (cost");
    if (to == std::string::npos) continue;  // a condition line
    out += (out.empty() ? "" : " > ") + line.substr(from, to - from);
  }
  return out;
}

/// The plans of the edge's page query (EventReader::read_all, no filter:
/// `position > after AND position <= min(after + scan window, head)`) and of
/// the baseline's, for a page in the middle of the seeded range.
void print_plans(sb::pg::Connection& c, const Seeded& s) {
  const std::int64_t after = s.first - 1 + s.count / 2;
  const std::int64_t upper = std::min(after + 100000, s.last);
  const std::string select = std::string("SELECT ") + sb::events::kEventColumns + " FROM events ";
  std::printf(
      "      edge's page (read_all, after %" PRId64 "): %s\n", after,
      plan_of(c, select + "WHERE position > " + std::to_string(after) +
                     " AND position <= " + std::to_string(upper) + " ORDER BY position LIMIT 1000")
          .c_str());
  std::printf("      baseline's page:                   %s\n",
              plan_of(c, select + "WHERE position > " + std::to_string(after) +
                             " ORDER BY position LIMIT 1000")
                  .c_str());
}

// ------------------------------------------------------------------ (c) SSE fan-out

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct SseFrame {
  std::int64_t position = 0;
  std::int64_t arrival_us = 0;  // wall clock
  std::int64_t arrival_ns = 0;  // steady clock
  std::int64_t recorded_ms = -1;
};

struct SseClient {
  std::unique_ptr<HttpStream> http;
  std::thread thread;
  std::atomic<bool> connected{false};
  std::atomic<std::size_t> count{0};
  std::mutex mu;
  std::vector<SseFrame> frames;
  std::int64_t pings = 0;
  std::int64_t overflows = 0;
  std::int64_t other_events = 0;  // `event: error` and the like
  std::string failure;

  void handle(std::string_view f, std::int64_t us, std::int64_t ns) {
    if (!f.empty() && f[0] == ':') {
      if (f.find("connected") != std::string_view::npos) {
        connected = true;
      } else {
        ++pings;
      }
      return;
    }
    if (f.rfind("id: ", 0) == 0) {
      SseFrame fr;
      fr.position = std::strtoll(f.data() + 4, nullptr, 10);
      fr.arrival_us = us;
      fr.arrival_ns = ns;
      const auto at = f.find("\"recorded_at\":\"");
      if (at != std::string_view::npos && at + 15 + 24 <= f.size()) {
        if (auto t = sb::events::try_parse_rfc3339(f.substr(at + 15, 24))) {
          fr.recorded_ms = t->time_since_epoch().count();
        }
      }
      std::lock_guard lock(mu);
      frames.push_back(fr);
      count = frames.size();
      return;
    }
    std::lock_guard lock(mu);
    if (f.rfind("event: overflow", 0) == 0) {
      ++overflows;
    } else {
      ++other_events;
      if (failure.empty()) failure = std::string(f.substr(0, 200));
    }
  }

  void run() {
    std::string data;
    std::string buf;
    try {
      while (true) {
        const bool more = http->read_some(data);
        const auto us = wall_us();
        const auto ns = steady_ns();
        buf += data;
        data.clear();
        std::size_t start = 0;
        while (true) {
          const auto end = buf.find("\n\n", start);
          if (end == std::string::npos) break;
          handle(std::string_view(buf).substr(start, end - start), us, ns);
          start = end + 2;
        }
        buf.erase(0, start);
        if (!more) break;
      }
    } catch (const std::exception& e) {
      std::lock_guard lock(mu);
      if (failure.empty()) failure = e.what();
    }
  }
};

struct Sent {
  std::int64_t sent_ns = 0;
  std::int64_t reply_ns = 0;
};

struct SseFigures {
  bool ran = false;
  double p50 = 0, p99 = 0, max = 0;  // arrival - recorded_at, ms
  std::int64_t missing = 0, duplicated = 0;
};

SseFigures sse_case(const Options& o, Stack& stack, int port, const std::string& jwt,
                    sb::broker::RpcClient& rpc) {
  SseFigures out;
  const int n_clients = o.sse_clients;
  const std::int64_t n_events = static_cast<std::int64_t>(o.sse_rate) * o.sse_seconds;
  std::printf(
      "\n(c) SSE fan-out: %d clients on /api/v1/events/stream?type=test.thing.changed, "
      "%" PRId64 " events at %d/s (one per store.append); load average %s\n",
      n_clients, n_events, o.sse_rate, loadavg().c_str());
  std::fflush(stdout);
  std::vector<std::unique_ptr<SseClient>> clients;
  const std::vector<std::string> headers = {"Authorization: Bearer " + jwt,
                                            "Accept: text/event-stream"};
  struct Joiner {
    std::vector<std::unique_ptr<SseClient>>& cs;
    ~Joiner() {
      for (auto& c : cs) {
        if (c->http) c->http->shutdown_now();
      }
      for (auto& c : cs) {
        if (c->thread.joinable()) c->thread.join();
      }
    }
  } joiner{clients};
  const auto t_connect = Clock::now();
  for (int i = 0; i < n_clients; ++i) {
    check_stop();
    auto c = std::make_unique<SseClient>();
    c->http = std::make_unique<HttpStream>(port, "/api/v1/events/stream?type=test.thing.changed",
                                           headers, 0, 60s);
    if (c->http->status() != 200) {
      throw std::runtime_error("SSE client " + std::to_string(i) + " got status " +
                               std::to_string(c->http->status()));
    }
    auto* raw = c.get();
    c->thread = std::thread([raw] { raw->run(); });
    clients.push_back(std::move(c));
  }
  stack.wait_until("every SSE client to be connected", 30s, [&] {
    return std::all_of(clients.begin(), clients.end(),
                       [](const auto& c) { return c->connected.load(); });
  });
  std::printf("    %d clients connected in %.2f s\n", n_clients, seconds_since(t_connect));
  std::fflush(stdout);

  // Steady appends, each one event; replies collected on the RPC loop thread
  // (into shared state: a call may still answer after an early return).
  struct Appends {
    std::mutex mu;
    std::unordered_map<std::int64_t, Sent> by_position;
    std::int64_t replies = 0;
    std::int64_t failed = 0;
    std::string first_failure;
    std::vector<double> rtt_ms;
  };
  auto appends = std::make_shared<Appends>();
  const auto period = std::chrono::nanoseconds(1'000'000'000LL / std::max(1, o.sse_rate));
  const auto t0 = Clock::now();
  for (std::int64_t i = 0; i < n_events; ++i) {
    check_stop();
    std::this_thread::sleep_until(t0 + period * i);
    const auto sent = steady_ns();
    rpc.call(
        "store.append",
        message(append_body("bench-sse-" + std::to_string(i % 16), "test.thing.changed", i, 1)),
        10s, [appends, sent](sb::broker::RpcClient::Result r) {
          const auto now = steady_ns();
          std::lock_guard lock(appends->mu);
          ++appends->replies;
          try {
            if (r.error) throw std::runtime_error(r.error->what());
            for (auto p : appended_positions(r.reply->body)) {
              appends->by_position[p] = {sent, now};
            }
            appends->rtt_ms.push_back(static_cast<double>(now - sent) / 1e6);
          } catch (const std::exception& e) {
            ++appends->failed;
            if (appends->first_failure.empty()) appends->first_failure = e.what();
          }
        });
  }
  const double send_seconds = seconds_since(t0);
  stack.wait_until("every append reply", 30s, [&] {
    std::lock_guard lock(appends->mu);
    return appends->replies >= n_events;
  });
  // Every reply is in: the RPC thread no longer touches these.
  const auto& by_position = appends->by_position;
  const std::size_t expected_n = by_position.size();
  // Every client has every frame, or 10 s more have passed.
  const auto drain_end = Clock::now() + 10s;
  while (Clock::now() < drain_end) {
    check_stop();
    if (std::all_of(clients.begin(), clients.end(),
                    [&](const auto& c) { return c->count.load() >= expected_n; })) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(200ms);  // a duplicate would arrive now
  for (auto& c : clients) c->http->shutdown_now();
  for (auto& c : clients) {
    if (c->thread.joinable()) c->thread.join();
  }
  stack.check_alive();

  std::vector<double> lat_recorded, lat_reply, lat_sent;
  lat_recorded.reserve(expected_n * static_cast<std::size_t>(n_clients));
  std::unordered_map<std::int64_t, std::pair<std::int64_t, std::int64_t>> spread;  // min, max ns
  std::int64_t total_frames = 0, missing = 0, dup = 0, unexpected = 0, out_of_order = 0;
  std::int64_t max_missing = 0, max_dup = 0, bad_clients = 0, overflows = 0, others = 0, pings = 0;
  std::int64_t no_recorded = 0;
  std::string failure;
  for (auto& c : clients) {
    std::lock_guard lock(c->mu);
    std::set<std::int64_t> seen;
    std::int64_t c_dup = 0, c_unexpected = 0, c_ooo = 0, last = -1;
    for (const auto& f : c->frames) {
      ++total_frames;
      if (!seen.insert(f.position).second) ++c_dup;
      if (f.position <= last) ++c_ooo;
      last = std::max(last, f.position);
      auto it = by_position.find(f.position);
      if (it == by_position.end()) {
        ++c_unexpected;
        continue;
      }
      if (f.recorded_ms >= 0) {
        lat_recorded.push_back(static_cast<double>(f.arrival_us) / 1000.0 -
                               static_cast<double>(f.recorded_ms));
      } else {
        ++no_recorded;
      }
      lat_reply.push_back(static_cast<double>(f.arrival_ns - it->second.reply_ns) / 1e6);
      lat_sent.push_back(static_cast<double>(f.arrival_ns - it->second.sent_ns) / 1e6);
      auto [s, inserted] = spread.try_emplace(f.position, f.arrival_ns, f.arrival_ns);
      if (!inserted) {
        s->second.first = std::min(s->second.first, f.arrival_ns);
        s->second.second = std::max(s->second.second, f.arrival_ns);
      }
    }
    std::int64_t c_missing = 0;
    for (const auto& [p, sent] : by_position) {
      if (seen.count(p) == 0) ++c_missing;
    }
    missing += c_missing;
    dup += c_dup;
    unexpected += c_unexpected;
    out_of_order += c_ooo;
    max_missing = std::max(max_missing, c_missing);
    max_dup = std::max(max_dup, c_dup);
    overflows += c->overflows;
    others += c->other_events;
    pings += c->pings;
    if (c_missing + c_dup + c_unexpected + c_ooo + c->overflows + c->other_events > 0) {
      ++bad_clients;
    }
    if (failure.empty() && !c->failure.empty()) failure = c->failure;
  }
  std::vector<double> spreads;
  for (const auto& [p, s] : spread)
    spreads.push_back(static_cast<double>(s.second - s.first) / 1e6);
  using namespace sb::bench;
  std::printf("    appends: %" PRId64 " sent in %.2f s, %" PRId64
              " failed%s; append RPC round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              n_events, send_seconds, appends->failed,
              appends->first_failure.empty() ? "" : (" (" + appends->first_failure + ")").c_str(),
              percentile(appends->rtt_ms, 50), percentile(appends->rtt_ms, 99),
              percentile(appends->rtt_ms, 100));
  std::printf("    frames: %" PRId64 " received, %zu expected (%zu events x %d clients)\n",
              total_frames, expected_n * static_cast<std::size_t>(n_clients), expected_n,
              n_clients);
  std::printf("    %-44s %8s %8s %8s\n", "latency (ms)", "p50", "p99", "max");
  std::printf("    %-44s %8.2f %8.2f %8.2f\n", "arrival - recorded_at (ms resolution)",
              percentile(lat_recorded, 50), percentile(lat_recorded, 99),
              percentile(lat_recorded, 100));
  std::printf("    %-44s %8.2f %8.2f %8.2f\n", "arrival - append reply (< 0: frame first)",
              percentile(lat_reply, 50), percentile(lat_reply, 99), percentile(lat_reply, 100));
  std::printf("    %-44s %8.2f %8.2f %8.2f\n", "arrival - append sent", percentile(lat_sent, 50),
              percentile(lat_sent, 99), percentile(lat_sent, 100));
  std::printf("    %-44s %8.2f %8.2f %8.2f\n", "spread: last client - first client, per event",
              percentile(spreads, 50), percentile(spreads, 99), percentile(spreads, 100));
  std::printf("    per client: missing %" PRId64 " (max %" PRId64
              " in one client), duplicated %" PRId64 " (max %" PRId64 "), unexpected %" PRId64
              ", out of order %" PRId64 ", overflow events %" PRId64 ", other events %" PRId64
              ", pings %" PRId64 "; clients with any problem: %" PRId64
              " of %d  (goal: 0 missing, 0 duplicated)\n",
              missing, max_missing, dup, max_dup, unexpected, out_of_order, overflows, others,
              pings, bad_clients, n_clients);
  if (no_recorded > 0)
    std::printf("    %" PRId64 " frames without a readable recorded_at\n", no_recorded);
  if (!failure.empty()) std::printf("    first client problem: %s\n", failure.c_str());
  std::printf("    load average after: %s\n", loadavg().c_str());
  std::fflush(stdout);
  out.ran = true;
  out.p50 = percentile(lat_recorded, 50);
  out.p99 = percentile(lat_recorded, 99);
  out.max = percentile(lat_recorded, 100);
  out.missing = missing;
  out.duplicated = dup;
  return out;
}

// ------------------------------------------------------------------ (d) slow reader

struct RssFigures {
  bool ran = false;
  double growth_mb = 0;
};

RssFigures slow_reader_case(const Options& o, Stack& stack, pid_t edge_pid, int port,
                            const std::string& jwt, const Seeded& s) {
  RssFigures out;
  std::printf("\n(d) NDJSON export of %" PRId64
              " events to a slow reader (%d KB per read, paced to "
              "~%d s); load average %s\n",
              s.count, o.slow_read_kb, o.slow_seconds, loadavg().c_str());
  std::fflush(stdout);
  // Warm-up (a small page and a small export), which also gives the size of
  // a line for the pacing.
  http_get(port, "/api/v1/events?limit=10", {"Authorization: Bearer " + jwt});
  Seeded small = s;
  small.last = std::min(s.last, s.first + 999);
  small.count = small.last - small.first + 1;
  const auto warm = edge_export(port, jwt, small);
  if (!warm.problems.empty()) std::printf("    warm-up export:%s\n", warm.problems.c_str());
  const double bytes_per_event =
      warm.events > 0 ? static_cast<double>(warm.bytes) / static_cast<double>(warm.events) : 500.0;
  const double rate = bytes_per_event * static_cast<double>(s.count) / o.slow_seconds;  // bytes/s
  std::this_thread::sleep_for(500ms);

  const bool hwm_reset = reset_hwm(edge_pid);
  const auto rss0 = proc_status_kb(edge_pid, "VmRSS");
  const auto hwm0 = proc_status_kb(edge_pid, "VmHWM");
  std::atomic<bool> sampling{true};
  std::atomic<std::int64_t> peak{rss0};
  std::mutex trace_mu;
  std::vector<std::pair<double, std::int64_t>> trace;  // every ~2 s
  const auto t0 = Clock::now();
  std::thread sampler([&] {
    auto next_trace = Clock::now();
    while (sampling) {
      const auto r = proc_status_kb(edge_pid, "VmRSS");
      if (r > peak) peak = r;
      if (Clock::now() >= next_trace) {
        std::lock_guard lock(trace_mu);
        trace.emplace_back(seconds_since(t0), r);
        next_trace += 2s;
      }
      std::this_thread::sleep_for(10ms);
    }
  });
  struct StopSampler {
    std::atomic<bool>& flag;
    std::thread& t;
    ~StopSampler() {
      flag = false;
      if (t.joinable()) t.join();
    }
  } stop_sampler{sampling, sampler};

  const std::size_t chunk = static_cast<std::size_t>(o.slow_read_kb) * 1024;
  HttpStream h(port, export_target(s), export_headers(jwt), static_cast<int>(chunk), 60s);
  NdjsonCheck c;
  std::string data;
  while (true) {
    check_stop();
    const bool more = h.read_some(data, chunk);
    c.feed(data);
    if (!more) break;
    const auto due = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                              static_cast<double>(h.wire_bytes()) / rate));
    std::this_thread::sleep_until(due);
  }
  const double secs = seconds_since(t0);
  const auto peak_sampled = peak.load();
  const auto hwm1 = proc_status_kb(edge_pid, "VmHWM");
  const auto rss1 = proc_status_kb(edge_pid, "VmRSS");
  sampling = false;
  sampler.join();
  std::this_thread::sleep_for(1s);
  const auto rss2 = proc_status_kb(edge_pid, "VmRSS");
  stack.check_alive();
  const auto problems = check_lines(c, s, h.complete(), h.status());
  std::printf("    read %" PRId64 " events, %.1f MB in %.1f s (%.2f MB/s, %.0f events/s)%s%s\n",
              c.lines, static_cast<double>(c.bytes) / 1048576.0, secs,
              static_cast<double>(c.bytes) / 1048576.0 / secs, static_cast<double>(c.lines) / secs,
              problems.empty() ? "" : "; PROBLEMS:", problems.c_str());
  std::printf(
      "    edge VmRSS before %.1f MB (VmHWM %s: %.1f MB); during: peak sampled (10 ms) "
      "%.1f MB; VmHWM after %.1f MB; VmRSS at the end %.1f MB, 1 s later %.1f MB\n",
      mb(rss0), hwm_reset ? "reset" : "NOT reset", mb(hwm0), mb(peak_sampled), mb(hwm1), mb(rss1),
      mb(rss2));
  std::string tr;
  {
    std::lock_guard lock(trace_mu);
    for (const auto& [t, r] : trace) {
      char b[64];
      std::snprintf(b, sizeof b, " %.0fs:%.1f", t, mb(r));
      tr += b;
    }
  }
  std::printf("    VmRSS trace (MB):%s\n", tr.c_str());
  const auto peak_kb = std::max(peak_sampled, hwm_reset ? hwm1 : peak_sampled);
  out.ran = true;
  out.growth_mb = mb(peak_kb - rss0);
  std::printf("    peak RSS growth %.1f MB   goal < 20 MB  %s\n", out.growth_mb,
              out.growth_mb < 20.0 ? "met" : "NOT MET");
  std::printf("    load average after: %s\n", loadavg().c_str());
  std::fflush(stdout);
  return out;
}

// ------------------------------------------------------------------ main

int usage() {
  std::fprintf(stderr,
               "usage: bench_events AMQP_URL POSTGRES_URL REDIS_URL [--build DIR] [--events N] "
               "[--rounds R] [--sse-clients C] [--sse-rate R] [--sse-seconds S] "
               "[--slow-seconds S] [--slow-read-kb K] [--only abcd] [--keep]\n");
  return 2;
}

std::string round_name(int r) {
  return r == 0 ? std::string("#0 (not counted)") : "#" + std::to_string(r);
}

int run(const Options& o) {
  std::printf(
      "bench_events: events over HTTP (issue 7), the edge vs PostgreSQL (same run, same "
      "servers)\n");
  std::printf("load average before: %s (%u cores)\n", loadavg().c_str(),
              std::thread::hardware_concurrency());
  std::fflush(stdout);
  const std::string dir = make_work_dir("events");

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
                      {"SB_HTTP_PORT", "0"},
                      {"SB_STORE_CATALOG_TEST_TYPES", "true"}}),
                "store.log");
    const auto started = Clock::now();
    sb::broker::RpcClientOptions ro;
    ro.connection.url = o.amqp_url;
    ro.connection.name = "bench-events";
    sb::broker::RpcClient rpc(ro);
    stack.wait_until("an RPC connection", 30s, [&] { return rpc.connected(); });
    std::string last_probe;
    try {
      stack.wait_until("the store to accept store.append (test.thing.happened)", 60s, [&] {
        try {
          auto r = rpc.call("store.append",
                            message(append_body("bench-probe", "test.thing.happened", 0, 1)), 5s)
                       .get();
          last_probe = r.body;
          appended_positions(r.body);
          return r.body.find("\"appended\"") != std::string::npos;
        } catch (const std::exception& e) {
          last_probe = e.what();
          return false;
        }
      });
    } catch (const std::runtime_error& e) {
      if (g_stop != 0) throw;
      throw std::runtime_error(std::string(e.what()) + "; last answer: " + last_probe);
    }
    const int edge_port = free_port();
    auto edge_env = with({{"SB_RABBITMQ_URL", o.amqp_url},
                          {"SB_REDIS_URL", o.redis_url},
                          {"SB_POSTGRES_URL", o.postgres_url},
                          {"SB_HTTP_PORT", std::to_string(edge_port)},
                          {"SB_AUTH_JWT_SECRET", secret}});
    if (o.sse_clients > 120) edge_env["SB_SSE_MAX_CLIENTS"] = std::to_string(o.sse_clients + 8);
    Child& edge = stack.start("sb-edge", {b + "/services/edge/sb-edge"}, edge_env, "edge.log");
    stack.wait_until("the edge's GET /ready to answer 200", 60s,
                     [&] { return http_get(edge_port, "/ready").first == 200; });
    const std::string jwt = mint_jwt(b + "/services/edge/sb-edge", edge_env);
    std::printf("stack ready in %.1f s (work dir %s)\n", seconds_since(started), dir.c_str());

    const auto seeded = seed(rpc, o.events);
    std::printf("seeded %" PRId64 " events (positions %" PRId64 "..%" PRId64
                ") through store.append, 500 per append, 4 in flight: %.1f s, %.0f events/s\n",
                seeded.count, seeded.first, seeded.last, seeded.seconds,
                static_cast<double>(seeded.count) / seeded.seconds);
    if (seeded.last - seeded.first + 1 != seeded.count) {
      std::printf("  note: other events interleave with the seeded ones (%" PRId64
                  " positions for %" PRId64 " events)\n",
                  seeded.last - seeded.first + 1, seeded.count);
    }
    std::fflush(stdout);

    // (d) first, on an edge that has not streamed anything big yet.
    RssFigures d;
    if (o.runs('d')) d = slow_reader_case(o, stack, edge.pid(), edge_port, jwt, seeded);

    std::vector<double> edge_rates, pg_rates;
    std::uint64_t edge_bytes = 0;
    if (o.runs('a') || o.runs('b')) {
      std::printf("\n(a)/(b) export of %" PRId64
                  " events, (b) then (a), round 0 then %d counted rounds; "
                  "load average %s\n",
                  seeded.count, o.rounds, loadavg().c_str());
      sb::pg::ConnectOptions co;
      co.url = o.postgres_url;
      co.application_name = "bench-events";
      sb::pg::Connection conn(co);
      // Round 0 runs on the statistics autovacuum left (it may have
      // analysed the table in the middle of the seeding, or not at all);
      // then ANALYZE, and the counted rounds.
      std::printf("    plans on the statistics autovacuum left:\n");
      print_plans(conn, seeded);
      std::fflush(stdout);
      std::printf("    %-60s %10s %10s %8s %8s\n", "round", "events/s", "events", "MB", "s");
      std::fflush(stdout);
      for (int r = 0; r <= o.rounds; ++r) {
        check_stop();
        if (r == 1) {
          conn.exec("ANALYZE events");
          std::printf("    plans after ANALYZE events:\n");
          print_plans(conn, seeded);
        }
        if (o.runs('b')) {
          const auto e = pg_export(conn, seeded);
          if (r > 0) pg_rates.push_back(e.rate());
          std::printf("    %-60s %10.0f %10" PRId64 " %8.1f %8.2f%s%s\n",
                      ("(b) PostgreSQL + event_from_row + to_json, " + round_name(r)).c_str(),
                      e.rate(), e.events, static_cast<double>(e.bytes) / 1048576.0, e.seconds,
                      e.problems.empty() ? "" : "  PROBLEMS:", e.problems.c_str());
        }
        if (o.runs('a')) {
          const auto e = edge_export(edge_port, jwt, seeded);
          if (r > 0) edge_rates.push_back(e.rate());
          edge_bytes = e.bytes;
          std::printf("    %-60s %10.0f %10" PRId64 " %8.1f %8.2f%s%s\n",
                      ("(a) edge NDJSON export, " + round_name(r)).c_str(), e.rate(), e.events,
                      static_cast<double>(e.bytes) / 1048576.0, e.seconds,
                      e.problems.empty() ? "" : "  PROBLEMS:", e.problems.c_str());
        }
        std::fflush(stdout);
        stack.check_alive();
      }
      std::printf("    load average after: %s\n", loadavg().c_str());
    }

    SseFigures c;
    if (o.runs('c')) c = sse_case(o, stack, edge_port, jwt, rpc);

    std::printf("\nsummary (load average now %s)\n", loadavg().c_str());
    if (!pg_rates.empty()) {
      std::printf("  (b) PostgreSQL read + serialise, median      %10.0f events/s\n",
                  median(pg_rates));
    }
    if (!edge_rates.empty()) {
      std::printf(
          "  (a) edge NDJSON export, median               %10.0f events/s  (%.0f bytes "
          "per line)\n",
          median(edge_rates), static_cast<double>(edge_bytes) / static_cast<double>(seeded.count));
    }
    if (!pg_rates.empty() && !edge_rates.empty() && median(pg_rates) > 0) {
      const double ratio = median(edge_rates) / median(pg_rates);
      std::printf("  (a)/(b)                                      %10.3f   goal >= 0.5  %s\n",
                  ratio, ratio >= 0.5 ? "met" : "NOT MET");
    }
    if (c.ran) {
      std::printf(
          "  (c) SSE %d clients, arrival - recorded_at     p50 %.2f ms, p99 %.2f ms, max "
          "%.2f ms; missing %" PRId64 ", duplicated %" PRId64 "  %s\n",
          o.sse_clients, c.p50, c.p99, c.max, c.missing, c.duplicated,
          c.missing == 0 && c.duplicated == 0 ? "(goal 0/0 met)" : "(goal 0/0 NOT MET)");
    }
    if (d.ran) {
      std::printf("  (d) slow NDJSON reader, edge peak RSS growth  %10.1f MB   goal < 20 MB  %s\n",
                  d.growth_mb, d.growth_mb < 20.0 ? "met" : "NOT MET");
    }
    std::printf(
        "  PostgreSQL read by position, 1000-row pages, measured earlier on this box "
        "(shared/STACK.md): ~144k rows/s (no JSON)\n");
    std::printf("\nprocess logs (all run at level warn):\n");
    stack.print_log_summary(12);
  });
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  auto int_arg = [&](int& i, auto& out) {
    if (i + 1 >= argc) return false;
    const long long v = std::atoll(argv[++i]);
    out = static_cast<std::remove_reference_t<decltype(out)>>(v);
    return v > 0;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    bool ok = true;
    if (a == "--build" && i + 1 < argc) {
      o.build_dir = argv[++i];
    } else if (a == "--only" && i + 1 < argc) {
      o.only = argv[++i];
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--events") {
      ok = int_arg(i, o.events);
    } else if (a == "--rounds") {
      ok = int_arg(i, o.rounds);
    } else if (a == "--sse-clients") {
      ok = int_arg(i, o.sse_clients);
    } else if (a == "--sse-rate") {
      ok = int_arg(i, o.sse_rate);
    } else if (a == "--sse-seconds") {
      ok = int_arg(i, o.sse_seconds);
    } else if (a == "--slow-seconds") {
      ok = int_arg(i, o.slow_seconds);
    } else if (a == "--slow-read-kb") {
      ok = int_arg(i, o.slow_read_kb);
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

  sb::log::init({.service = "bench-events",
                 .instance = "",
                 .level = sb::log::Level::warn,
                 .json = true,
                 .file = ""});
  sb::bench::install_stop_handlers();
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_events: %s\n", e.what());
    return 1;
  }
}

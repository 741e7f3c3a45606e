// Non-blocking HTTP/1.1 calls to upstream instances on one libuv loop
// (loop_upstream.hpp); the semantics are those of Upstreams::call.
//
// Memory: a Conn (socket, timer, buffers, parse state) is freed only by the
// close callbacks of its two handles, and those touch nothing else, so the
// loop may keep running (or be drained) after the LoopUpstream is gone.
// What libuv still delivers to a closing Conn (a cancelled connect or write)
// sees state closing and returns. A name resolution in flight points at its
// Pool through a Resolve that the destructor detaches.
//
// Reentrancy: `done` may call call() again or destroy the LoopUpstream, so
// it always runs last, after the health and pool bookkeeping; nothing but
// Conns (alive until their close callbacks) is touched after it.

#include "loop_upstream.hpp"

#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sb::edge {

namespace {

using Clock = std::chrono::steady_clock;
using Kind = UpstreamResult::Kind;
using Done = std::function<void(UpstreamResult)>;

constexpr std::size_t kMaxResponseBytes = std::size_t{64} << 20;
constexpr std::size_t kMaxHeadBytes = std::size_t{64} << 10;
constexpr std::size_t kMaxLineBytes = 4096;  // a chunk-size or trailer line
constexpr std::size_t kReadBufferBytes = std::size_t{64} << 10;
constexpr std::size_t kInlineBodyBytes = 16384;  // larger bodies are written from the request

void lower_in_place(std::string& s) {
  for (auto& ch : s) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
}

std::string uv_error(std::string_view what, int err) {
  std::string s(what);
  s += ": ";
  s += uv_strerror(err);
  return s;
}

struct Resolve;
struct Conn;

// Everything known about one base URL: the parsed address and the idle
// connections to it.
struct Pool {
  LoopUpstream::Impl* impl = nullptr;
  std::string invalid;    // why the base URL cannot be used ("" when it can)
  std::string host;       // as written (without brackets)
  std::string port_text;  // for getaddrinfo
  std::string host_line;  // "Host: host:port\r\n"
  bool literal = false;
  bool resolved = false;
  sockaddr_storage addr{};
  Resolve* resolving = nullptr;
  std::vector<Conn*> idle;     // oldest first
  std::vector<Conn*> waiting;  // new connections waiting for the address
};

struct Resolve {
  uv_getaddrinfo_t req{};
  Pool* pool = nullptr;  // null once the LoopUpstream is gone
};

struct Call {
  Done done;
  std::string instance_id;
  Clock::time_point deadline{};
  bool repeatable = false;
  bool head = false;
};

enum class State { resolving, connecting, busy, idle, closing };
enum class Phase { head, length, chunk_size, chunk_data, chunk_end, trailers, until_eof, complete };
enum class Fed { more, complete, error };

struct Conn {
  LoopUpstream::Impl* impl = nullptr;  // valid while state != closing
  Pool* pool = nullptr;                // likewise
  Conn* prev = nullptr;                // every open Conn of the Impl
  Conn* next = nullptr;
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect_req{};
  uv_write_t write_req{};
  int open_handles = 2;
  State state = State::connecting;
  bool reused = false;
  bool writing = false;  // a uv_write in flight: `out` and `body` are in use
  bool write_failed = false;
  bool has_call = false;
  Clock::time_point timer_until{};
  Clock::time_point idle_since{};
  Call call;
  std::string out;   // the request head (and a small body)
  std::string body;  // a large body, written after `out`
  // The response being read.
  Phase phase = Phase::head;
  std::string head;     // a head split across reads
  std::string line;     // a line split across reads
  std::string scratch;  // a lower-cased header name
  std::size_t remaining = 0;
  std::size_t received = 0;
  bool keep_alive = true;
  bool leftover = false;  // bytes after the response: the framing cannot be trusted
  UpstreamResult result;
  std::string error;
};

Conn* of(uv_handle_t* h) {
  return static_cast<Conn*>(h->data);
}

void on_handle_closed(uv_handle_t* h) {
  auto* c = of(h);
  if (--c->open_handles == 0) delete c;
}

std::size_t request_size(const Conn& c) {
  return c.out.size() + c.body.size();
}

// The request bytes from `offset` on, as at most two buffers.
unsigned int request_bufs(Conn& c, std::size_t offset, uv_buf_t* bufs) {
  unsigned int n = 0;
  if (offset < c.out.size()) {
    bufs[n++] =
        uv_buf_init(c.out.data() + offset, static_cast<unsigned int>(c.out.size() - offset));
    offset = 0;
  } else {
    offset -= c.out.size();
  }
  if (offset < c.body.size()) {
    bufs[n++] =
        uv_buf_init(c.body.data() + offset, static_cast<unsigned int>(c.body.size() - offset));
  }
  return n;
}

// ------------------------------------------------------------ response parsing

bool parse_error(Conn& c, std::string_view why) {
  c.error = "invalid response from the instance: ";
  c.error += why;
  return false;
}

Fed feed_error(Conn& c, std::string_view why) {
  parse_error(c, why);
  return Fed::error;
}

// One complete head (status line, headers, blank line).
bool parse_head(Conn& c, std::string_view h) {
  auto& res = c.result.response;
  auto eol = h.find('\n');
  auto status_line = h.substr(0, eol);
  if (!status_line.empty() && status_line.back() == '\r') status_line.remove_suffix(1);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ' ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return parse_error(c, "bad status line");
  }
  int status = 0;
  const char* digits = status_line.data() + 9;
  auto [end, ec] = std::from_chars(digits, digits + 3, status);
  if (ec != std::errc() || end != digits + 3 || status < 100) {
    return parse_error(c, "bad status code");
  }
  bool keep_alive = status_line[7] != '0';  // HTTP/1.0 closes unless asked
  bool chunked = false;
  bool has_length = false;
  std::size_t length = 0;
  res.headers.clear();
  res.content_type.clear();
  std::size_t pos = eol + 1;
  while (pos < h.size()) {
    auto e = h.find('\n', pos);
    if (e == std::string_view::npos) e = h.size();
    auto l = h.substr(pos, e - pos);
    pos = e + 1;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.empty()) break;
    const auto colon = l.find(':');
    if (colon == std::string_view::npos || colon == 0) return parse_error(c, "bad header line");
    c.scratch.assign(l.data(), colon);
    lower_in_place(c.scratch);
    const std::string_view name = c.scratch;
    const auto value = text::trim(l.substr(colon + 1));
    if (name == "content-length") {
      std::size_t n = 0;
      auto [vend, vec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (vec != std::errc() || vend != value.data() + value.size() || value.empty() ||
          (has_length && n != length)) {
        return parse_error(c, "bad content-length");
      }
      has_length = true;
      length = n;
    } else if (name == "transfer-encoding") {
      chunked = text::has_token(value, "chunked");
      if (!chunked) return parse_error(c, "unsupported transfer-encoding");
    } else if (name == "connection") {
      if (text::has_token(value, "close")) {
        keep_alive = false;
      } else if (text::has_token(value, "keep-alive")) {
        keep_alive = true;
      }
    }
    if (hop_by_hop(name)) continue;
    if (name == "content-type") {
      res.content_type.assign(value);
      continue;
    }
    res.headers.push_back({c.scratch, std::string(value)});
  }
  if (status < 200) {
    // 100 Continue and other interim answers: the real one follows.
    if (status == 101) return parse_error(c, "unexpected 101 Switching Protocols");
    res.headers.clear();
    res.content_type.clear();
    return true;
  }
  res.status = status;
  c.keep_alive = keep_alive;
  if (c.call.head || status == 204 || status == 304) {
    c.phase = Phase::complete;
  } else if (chunked) {
    if (has_length) c.keep_alive = false;  // both framings: do not trust the connection
    c.phase = Phase::chunk_size;
  } else if (has_length) {
    if (length > kMaxResponseBytes) {
      c.error = "response too large";
      return false;
    }
    c.remaining = length;
    c.phase = length == 0 ? Phase::complete : Phase::length;
    if (length > 0) res.body.reserve(length);
  } else {
    c.keep_alive = false;
    c.phase = Phase::until_eof;
  }
  return true;
}

// A line ending in '\n' (maybe begun in earlier reads), without its CRLF.
// False when the input ended first (what was read is kept in c.line).
bool take_line(Conn& c, const char*& p, std::size_t& n, std::string_view& out) {
  const auto* nl = static_cast<const char*>(std::memchr(p, '\n', n));
  if (nl == nullptr) {
    c.line.append(p, n);
    p += n;
    n = 0;
    return false;
  }
  const auto len = static_cast<std::size_t>(nl - p);
  if (c.line.empty()) {
    out = std::string_view(p, len);
  } else {
    c.line.append(p, len);
    out = c.line;
  }
  p += len + 1;
  n -= len + 1;
  if (!out.empty() && out.back() == '\r') out.remove_suffix(1);
  return true;
}

// Consumes bytes read from the instance.
Fed feed(Conn& c, const char* p, std::size_t n) {
  c.received += n;
  if (c.received > kMaxResponseBytes) {
    c.error = "response too large";
    return Fed::error;
  }
  auto& body = c.result.response.body;
  std::string_view line;
  while (n > 0) {
    switch (c.phase) {
      case Phase::head: {
        std::string_view whole;
        std::size_t used = 0;
        if (c.head.empty()) {
          const std::string_view in(p, n);
          const auto e = in.find("\r\n\r\n");
          if (e == std::string_view::npos) {
            c.head.assign(p, n);
            used = n;
          } else {
            used = e + 4;
            whole = in.substr(0, used);
          }
        } else {
          const auto old = c.head.size();
          c.head.append(p, n);
          const auto e = std::string_view(c.head).find("\r\n\r\n", old >= 3 ? old - 3 : 0);
          if (e == std::string_view::npos) {
            used = n;
          } else {
            used = e + 4 - old;
            c.head.resize(e + 4);
            whole = c.head;
          }
        }
        p += used;
        n -= used;
        if (whole.empty()) {
          if (c.head.size() > kMaxHeadBytes) return feed_error(c, "head too large");
          break;
        }
        if (!parse_head(c, whole)) return Fed::error;
        c.head.clear();
        break;
      }
      case Phase::length:
      case Phase::chunk_data: {
        const auto k = std::min(n, c.remaining);
        body.append(p, k);
        p += k;
        n -= k;
        c.remaining -= k;
        if (c.remaining == 0)
          c.phase = c.phase == Phase::length ? Phase::complete : Phase::chunk_end;
        break;
      }
      case Phase::chunk_size: {
        if (!take_line(c, p, n, line)) break;
        std::size_t size = 0;
        auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
        if (ec != std::errc() || end == line.data() ||
            (end != line.data() + line.size() && *end != ';' && *end != ' ' && *end != '\t')) {
          return feed_error(c, "bad chunk size");
        }
        c.line.clear();
        if (size > kMaxResponseBytes - body.size()) {
          c.error = "response too large";
          return Fed::error;
        }
        c.remaining = size;
        c.phase = size == 0 ? Phase::trailers : Phase::chunk_data;
        break;
      }
      case Phase::chunk_end:
        if (!take_line(c, p, n, line)) break;
        if (!line.empty()) return feed_error(c, "chunk not followed by CRLF");
        c.line.clear();
        c.phase = Phase::chunk_size;
        break;
      case Phase::trailers:
        if (!take_line(c, p, n, line)) break;
        if (line.empty()) c.phase = Phase::complete;
        c.line.clear();  // trailers are dropped
        break;
      case Phase::until_eof:
        body.append(p, n);
        n = 0;
        break;
      case Phase::complete:
        c.leftover = true;
        n = 0;
        break;
    }
  }
  if (c.line.size() > kMaxLineBytes) return feed_error(c, "line too long");
  return c.phase == Phase::complete ? Fed::complete : Fed::more;
}

// ------------------------------------------------------------ base URLs

void parse_base_url(const std::string& base_url, Pool& p) {
  std::string_view u = base_url;
  if (u.substr(0, 8) == "https://") {
    p.invalid = "https upstreams are not supported";
    return;
  }
  if (u.substr(0, 7) == "http://") u.remove_prefix(7);
  if (const auto end = u.find_first_of("/?#"); end != std::string_view::npos) {
    u = u.substr(0, end);
  }
  std::string_view host;
  std::string_view port = "80";
  bool v6 = false;
  if (!u.empty() && u.front() == '[') {
    const auto close = u.find(']');
    if (close == std::string_view::npos) {
      p.invalid = "invalid base url: " + base_url;
      return;
    }
    host = u.substr(1, close - 1);
    v6 = true;
    u.remove_prefix(close + 1);
    if (!u.empty() && u.front() != ':') host = {};
    if (!u.empty()) port = u.substr(1);
  } else {
    const auto colon = u.find(':');
    host = u.substr(0, colon);
    if (colon != std::string_view::npos) port = u.substr(colon + 1);
  }
  int port_number = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (host.empty() || ec != std::errc() || end != port.data() + port.size() || port_number < 1 ||
      port_number > 65535 || u.find('@') != std::string_view::npos) {
    p.invalid = "invalid base url: " + base_url;
    return;
  }
  p.host.assign(host);
  p.port_text.assign(port);
  p.host_line = "Host: ";
  if (v6) p.host_line += '[';
  p.host_line += host;
  if (v6) p.host_line += ']';
  p.host_line += ':';
  p.host_line += port;
  p.host_line += "\r\n";
  if (v6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&p.addr);
    p.literal = uv_ip6_addr(p.host.c_str(), port_number, a6) == 0;
    if (!p.literal) p.invalid = "invalid base url: " + base_url;
  } else {
    in_addr probe{};
    if (uv_inet_pton(AF_INET, p.host.c_str(), &probe) == 0) {
      p.literal =
          uv_ip4_addr(p.host.c_str(), port_number, reinterpret_cast<sockaddr_in*>(&p.addr)) == 0;
    }
  }
  p.resolved = p.literal;
}

void on_timer(uv_timer_t* t);
void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
void on_connected(uv_connect_t* req, int status);
void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
void on_written(uv_write_t* req, int status);

void answer(Done& done, Kind kind, std::string error) {
  UpstreamResult r;
  r.kind = kind;
  r.error = std::move(error);
  done(std::move(r));
}

}  // namespace

struct LoopUpstream::Impl {
  uv_loop_t* loop;
  UpstreamOptions options;
  std::shared_ptr<Upstreams> health;
  std::unordered_map<std::string, std::unique_ptr<Pool>> pools;  // by base url
  Conn* conns = nullptr;
  std::unique_ptr<char[]> read_buffer = std::make_unique<char[]>(kReadBufferBytes);
  bool closed = false;

  Impl(uv_loop_t* l, UpstreamOptions o, std::shared_ptr<Upstreams> h)
      : loop(l), options(o), health(h ? std::move(h) : std::make_shared<Upstreams>(o)) {}

  void call(const std::string& instance_id, const std::string& base_url, HttpRequest& request,
            Clock::time_point deadline, Done& done) {
    if (closed) return answer(done, Kind::failed, "closed");
    const auto now = Clock::now();
    if (deadline <= now) return answer(done, Kind::failed, "deadline passed before the call");
    Pool& p = pool(base_url);
    if (!p.invalid.empty()) {
      health->record_failure(instance_id);
      return answer(done, Kind::failed, p.invalid);
    }
    Conn* c = take(p, now);
    const bool fresh = c == nullptr;
    if (fresh) c = open(p);
    c->call.done = std::move(done);
    c->call.instance_id = instance_id;
    c->call.deadline = deadline;
    c->call.repeatable = idempotent_method(request.method);
    c->call.head = request.method == "HEAD";
    c->has_call = true;
    serialize(p, request, *c);
    if (fresh) return start(c, now);
    begin(c);
    arm(c, deadline, now);
    send(c);
  }

  Pool& pool(const std::string& base_url) {
    auto it = pools.find(base_url);
    if (it != pools.end()) return *it->second;
    auto p = std::make_unique<Pool>();
    p->impl = this;
    parse_base_url(base_url, *p);
    return *pools.emplace(base_url, std::move(p)).first->second;
  }

  static void serialize(const Pool& p, HttpRequest& req, Conn& c) {
    auto& o = c.out;
    o.clear();
    std::size_t size =
        req.method.size() + req.path.size() + req.query.size() + p.host_line.size() + 64;
    for (const auto& h : req.headers) size += h.name.size() + h.value.size() + 4;
    const bool inline_body = req.body.size() <= kInlineBodyBytes;
    if (inline_body) size += req.body.size();
    o.reserve(size);
    o += req.method;
    o += ' ';
    if (req.path.empty()) {
      o += '/';
    } else {
      o += req.path;
    }
    if (!req.query.empty()) {
      o += '?';
      o += req.query;
    }
    o += " HTTP/1.1\r\n";
    o += p.host_line;
    for (const auto& h : req.headers) {
      if (h.name == "host" || hop_by_hop(h.name)) continue;
      o += h.name;
      o += ": ";
      o += h.value;
      o += "\r\n";
    }
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      char digits[24];
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, req.body.size());
      (void)ec;
      o += "Content-Length: ";
      o.append(digits, end);
      o += "\r\n";
    }
    o += "\r\n";
    if (inline_body) {
      o += req.body;
      c.body.clear();
    } else {
      c.body = std::move(req.body);
    }
  }

  // ---------------------------------------------------------- connections

  Conn* open(Pool& p) {
    auto* c = new Conn();
    c->impl = this;
    c->pool = &p;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->connect_req.data = c;
    c->write_req.data = c;
    c->next = conns;
    if (conns != nullptr) conns->prev = c;
    conns = c;
    c->result.response.content_type.clear();
    return c;
  }

  // A pooled connection idle for less than max_idle, marked busy.
  Conn* take(Pool& p, Clock::time_point now) {
    while (!p.idle.empty()) {
      Conn* c = p.idle.back();
      p.idle.pop_back();
      if (now - c->idle_since < options.max_idle) {
        c->state = State::busy;
        c->reused = true;
        return c;
      }
      c->state = State::busy;  // out of the pool already
      close(c);
    }
    return nullptr;
  }

  void close(Conn* c) {
    if (c->state == State::closing) return;
    if (c->state == State::idle) erase(c->pool->idle, c);
    if (c->state == State::resolving) erase(c->pool->waiting, c);
    if (c->prev != nullptr) c->prev->next = c->next;
    if (c->next != nullptr) c->next->prev = c->prev;
    if (conns == c) conns = c->next;
    c->prev = c->next = nullptr;
    c->state = State::closing;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_handle_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_handle_closed);
  }

  static void erase(std::vector<Conn*>& v, Conn* c) {
    auto it = std::find(v.begin(), v.end(), c);
    if (it != v.end()) v.erase(it);
  }

  void arm(Conn* c, Clock::time_point until, Clock::time_point now) {
    c->timer_until = until;
    const auto left = until > now ? std::chrono::ceil<std::chrono::milliseconds>(until - now)
                                  : std::chrono::milliseconds(0);
    uv_timer_start(&c->timer, on_timer, static_cast<std::uint64_t>(left.count()), 0);
  }

  // A new connection: resolve the host if needed, then connect.
  void start(Conn* c, Clock::time_point now) {
    Pool& p = *c->pool;
    arm(c, std::min(now + options.connect_timeout, c->call.deadline), now);
    if (p.resolved) return connect(c);
    c->state = State::resolving;
    p.waiting.push_back(c);
    if (p.resolving == nullptr) resolve(p);
  }

  void resolve(Pool& p) {
    auto* r = new Resolve();
    r->pool = &p;
    r->req.data = r;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    p.resolving = r;
    const int rc =
        uv_getaddrinfo(loop, &r->req, on_resolved, p.host.c_str(), p.port_text.c_str(), &hints);
    if (rc < 0) {
      p.resolving = nullptr;
      delete r;
      resolved(p, uv_error("cannot resolve " + p.host, rc));
    }
  }

  // The address is known (error empty) or cannot be: on to the waiting calls.
  void resolved(Pool& p, const std::string& error) {
    auto waiting = std::move(p.waiting);
    p.waiting.clear();
    for (Conn* c : waiting) {
      // A done callback may have closed everything, this Impl included.
      if (c->state != State::resolving) continue;
      c->state = State::connecting;
      if (error.empty()) {
        connect(c);
      } else {
        finish(c, Kind::unreachable, error);
      }
    }
  }

  void connect(Conn* c) {
    c->state = State::connecting;
    const int rc = uv_tcp_connect(&c->connect_req, &c->tcp,
                                  reinterpret_cast<const sockaddr*>(&c->pool->addr), on_connected);
    if (rc < 0) finish(c, Kind::unreachable, uv_error("connect", rc));
  }

  void connected(Conn* c, int status) {
    if (status < 0) {
      if (!c->pool->literal) c->pool->resolved = false;  // look the name up again next time
      return finish(c, Kind::unreachable, uv_error("connect", status));
    }
    uv_tcp_nodelay(&c->tcp, 1);
    const int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
    if (rc < 0) return finish(c, Kind::unreachable, uv_error("read", rc));
    c->state = State::busy;
    begin(c);
    arm(c, c->call.deadline, Clock::now());
    send(c);
  }

  // Ready to read the response to a request about to be sent.
  static void begin(Conn* c) {
    c->phase = Phase::head;
    c->head.clear();
    c->line.clear();
    c->remaining = 0;
    c->received = 0;
    c->keep_alive = true;
    c->leftover = false;
    c->write_failed = false;
    auto& r = c->result;
    r.kind = Kind::response;
    r.error.clear();
    r.response.status = 0;
    r.response.content_type.clear();
    r.response.headers.clear();
    r.response.body.clear();
  }

  void send(Conn* c) {
    auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
    uv_buf_t bufs[2];
    unsigned int n = request_bufs(*c, 0, bufs);
    int rc = uv_try_write(stream, bufs, n);
    if (rc == UV_EAGAIN) rc = 0;
    if (rc < 0) {
      c->write_failed = true;
      return lost(c, rc);
    }
    const auto sent = static_cast<std::size_t>(rc);
    if (sent == request_size(*c)) return;
    n = request_bufs(*c, sent, bufs);
    c->writing = true;
    rc = uv_write(&c->write_req, stream, bufs, n, on_written);
    if (rc < 0) {
      c->writing = false;
      c->write_failed = true;
      lost(c, rc);
    }
  }

  // The connection broke before the whole response was read.
  void lost(Conn* c, int err) {
    const bool closed_by_peer = err == UV_EOF || err == UV_ECONNRESET || err == UV_EPIPE;
    if (c->reused && c->received == 0 && closed_by_peer &&
        (c->write_failed || c->call.repeatable)) {
      return retry(c);
    }
    std::string why;
    if (c->write_failed) {
      why = uv_error("writing to the instance failed", err);
    } else if (err == UV_EOF) {
      why = c->received == 0 ? "the instance closed the connection before answering"
                             : "the instance closed the connection mid-response";
    } else {
      why = uv_error("the connection to the instance failed", err);
    }
    finish(c, Kind::failed, std::move(why));
  }

  // A pooled connection the instance had closed: not the instance failing.
  // Once more on a new connection (what may have been read only when
  // repeating it is harmless).
  void retry(Conn* c) {
    const auto now = Clock::now();
    if (now >= c->call.deadline) return finish(c, Kind::failed, "deadline passed");
    health->record_stale();
    Conn* n = open(*c->pool);
    n->call = std::move(c->call);
    n->has_call = true;
    c->has_call = false;
    n->out = c->out;  // copies: a write on `c` may still hold its buffers
    n->body = c->body;
    close(c);
    start(n, now);
  }

  void read(Conn* c, ssize_t nread, const uv_buf_t* buf) {
    if (c->state == State::idle) {
      // An idle connection has nothing to say: closed by the instance, or
      // bytes nobody asked for.
      if (nread != 0) close(c);
      return;
    }
    if (c->state != State::busy) return;
    if (nread > 0) {
      switch (feed(*c, buf->base, static_cast<std::size_t>(nread))) {
        case Fed::more:
          return;
        case Fed::error:
          return finish(c, Kind::failed, std::move(c->error));
        case Fed::complete:
          return finish(c, Kind::response, {});
      }
      return;
    }
    if (nread == 0) return;
    const int err = static_cast<int>(nread);
    if (err == UV_EOF && c->phase == Phase::until_eof) return finish(c, Kind::response, {});
    lost(c, err);
  }

  void timer_fired(Conn* c) {
    const auto now = Clock::now();
    if (now < c->timer_until) return arm(c, c->timer_until, now);  // the loop's clock lags
    switch (c->state) {
      case State::idle:
        return close(c);
      case State::resolving:
      case State::connecting:
        return finish(
            c, Kind::unreachable,
            now >= c->call.deadline ? "deadline passed before connecting" : "connect timed out");
      case State::busy:
        return finish(c, Kind::failed, "deadline passed");
      case State::closing:
        return;
    }
  }

  // Ends the call on `c`: health, the connection pooled or closed, then
  // done — last, as it may call again or destroy this.
  void finish(Conn* c, Kind kind, std::string error) {
    UpstreamResult r = kind == Kind::response ? std::move(c->result) : UpstreamResult{};
    r.kind = kind;
    r.error = std::move(error);
    Done done = std::move(c->call.done);
    c->has_call = false;
    const int status = r.response.status;
    if (kind == Kind::response && status != 502 && status != 503 && status != 504) {
      health->record_success(c->call.instance_id);
    } else {
      health->record_failure(c->call.instance_id);
    }
    if (kind == Kind::response && c->keep_alive && !c->leftover && !c->writing &&
        c->pool->idle.size() < options.max_idle_per_instance && options.max_idle.count() > 0) {
      const auto now = Clock::now();
      c->state = State::idle;
      c->idle_since = now;
      c->pool->idle.push_back(c);
      arm(c, now + options.max_idle, now);
    } else {
      close(c);
    }
    done(std::move(r));
  }

  // The destructor's work: every handle closed, calls in flight answered.
  void shutdown() {
    closed = true;
    for (auto& [url, p] : pools) {
      if (p->resolving != nullptr) {
        p->resolving->pool = nullptr;
        uv_cancel(reinterpret_cast<uv_req_t*>(&p->resolving->req));
        p->resolving = nullptr;
      }
    }
    std::vector<Done> pending;
    while (conns != nullptr) {
      Conn* c = conns;
      if (c->has_call) {
        pending.push_back(std::move(c->call.done));
        c->has_call = false;
      }
      close(c);
    }
    pools.clear();
    for (auto& done : pending) answer(done, Kind::failed, "closed");
  }
};

namespace {

void on_timer(uv_timer_t* t) {
  auto* c = of(reinterpret_cast<uv_handle_t*>(t));
  if (c->state != State::closing) c->impl->timer_fired(c);
}

void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<Resolve> r(static_cast<Resolve*>(req->data));
  Pool* p = r->pool;
  if (p == nullptr) {  // the LoopUpstream is gone
    uv_freeaddrinfo(res);
    return;
  }
  p->resolving = nullptr;
  // IPv4 first: upstreams commonly listen on 0.0.0.0 only.
  const addrinfo* pick = nullptr;
  for (auto* a = res; status == 0 && a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
    if (pick == nullptr && a->ai_family == AF_INET6) pick = a;
  }
  std::string error;
  if (pick != nullptr && pick->ai_addrlen <= sizeof p->addr) {
    std::memcpy(&p->addr, pick->ai_addr, pick->ai_addrlen);
    p->resolved = true;
  } else {
    error = status < 0 ? uv_error("cannot resolve " + p->host, status)
                       : "cannot resolve " + p->host + ": no address";
  }
  uv_freeaddrinfo(res);
  p->impl->resolved(*p, error);
}

void on_connected(uv_connect_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (c->state == State::closing) return;  // cancelled by close
  c->impl->connected(c, status);
}

void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* c = of(h);
  buf->base = c->impl->read_buffer.get();
  buf->len = kReadBufferBytes;
}

void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = of(reinterpret_cast<uv_handle_t*>(s));
  if (c->state != State::closing) c->impl->read(c, nread, buf);
}

void on_written(uv_write_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  c->writing = false;
  if (c->state == State::closing || status == 0) return;
  if (c->state != State::busy) return;
  c->write_failed = true;
  c->impl->lost(c, status);
}

}  // namespace

LoopUpstream::LoopUpstream(uv_loop_t* loop, UpstreamOptions options,
                           std::shared_ptr<Upstreams> health)
    : impl_(std::make_unique<Impl>(loop, options, std::move(health))) {}

LoopUpstream::~LoopUpstream() {
  impl_->shutdown();
}

void LoopUpstream::call(const std::string& instance_id, const std::string& base_url,
                        HttpRequest request, std::chrono::steady_clock::time_point deadline,
                        std::function<void(UpstreamResult)> done) {
  impl_->call(instance_id, base_url, request, deadline, done);
}

}  // namespace sb::edge

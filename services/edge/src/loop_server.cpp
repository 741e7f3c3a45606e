// The edge's HTTP/1.1 server on libuv loops (loop_server.hpp).
//
// Threads: each loop thread owns its loop, listener, connections and timers;
// nothing of a connection is touched off its loop. Other threads reach a loop
// only through its inbox: a mutex-protected queue woken by an sb::Wakeup
// (eventfd) that a uv_poll_t watches (not uv_async_t: see wakeup.hpp).
//
// Memory: a Conn is freed by the close callbacks of its two handles (socket
// and timer); libuv calls the callbacks of its cancelled writes and shutdown
// before those, so a write request may point at its Conn. A Reply reaches its
// Conn through the connection's ConnLink (shared, conn pointer cleared on the
// loop when the Conn closes) plus the request's sequence number, so a late
// reply is dropped. The ConnLink holds the LoopCtx, which outlives the server
// when replies do: after stop its inbox is closed and every post is refused.
//
// Reentrancy: the handler and Reply::send may run inside process(); a Conn
// is never freed synchronously, and process() never nests (`processing`).

#include "loop_server.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <list>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/wakeup.hpp"

namespace sb::edge {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = std::size_t{64} << 10;
constexpr std::size_t kMaxRequestLine = 8192;
/// A chunk-size line with its extensions, CRLF included.
constexpr std::size_t kMaxChunkLine = 4096;
/// Bytes read ahead (pipelined) while a request is answered; beyond, reading pauses.
constexpr std::size_t kMaxReadAhead = std::size_t{64} << 10;
/// A read buffer larger than this is released once empty (after a big body).
constexpr std::size_t kKeepBufferBytes = std::size_t{64} << 10;
constexpr std::size_t kMaxLingerBytes = std::size_t{1} << 20;
constexpr std::chrono::milliseconds kMaxLinger{2000};

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

std::string_view reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Entity";
    case 425:
      return "Too Early";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 200   ? "Informational"
             : status < 300 ? "OK"
             : status < 400 ? "Redirect"
             : status < 500 ? "Client Error"
                            : "Server Error";
  }
}

bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

/// A response header name that may go on the wire: a non-empty RFC 7230 token.
bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (char ch : name) {
    if (!is_tchar(static_cast<unsigned char>(ch))) return false;
  }
  return true;
}

/// A response header value that cannot end its line early (no CR, LF, NUL).
bool valid_header_value(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

/// hop_by_hop() for a name in any case.
bool hop_by_hop_any_case(std::string_view name) {
  char buf[24];
  if (name.size() > sizeof(buf)) {
    return name.size() > 6 && text::iequals(name.substr(0, 6), "proxy-");
  }
  for (std::size_t i = 0; i < name.size(); ++i) buf[i] = to_lower(name[i]);
  return hop_by_hop(std::string_view(buf, name.size()));
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

void append_hex(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, 16);
  out.append(buf, r.ptr);
}

bool no_body_status(int status) {
  return status < 200 || status == 204 || status == 304;
}

std::uint64_t ms_of(std::chrono::milliseconds d) {
  return d.count() <= 0 ? 1 : static_cast<std::uint64_t>(d.count());
}

struct LoopCtx;
struct Conn;

/// A connection as seen from Replies and streams: `conn` is read and cleared
/// on the loop thread only.
struct ConnLink {
  Conn* conn = nullptr;
  std::shared_ptr<LoopCtx> ctx;
};

thread_local LoopCtx* tls_loop = nullptr;

/// One streamed response: shared by its producer thread and the loop.
struct Stream {
  std::shared_ptr<ConnLink> link;
  std::uint64_t seq = 0;
  bool chunked = true;
  std::size_t limit = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::string pending;            // framed bytes not yet handed to the connection
  std::size_t queued = 0;         // framed bytes posted and not yet written
  bool scheduled = false;         // a flush is posted to the loop
  bool closed = false;            // the connection is gone or the server stops
  bool ended = false;             // the producer returned
  bool failed = false;            // ... by throwing: the body is cut
  std::atomic<bool> done{false};  // the thread is about to exit

  bool write(std::string_view data);
  void finish(bool ok);
  void close() {
    std::lock_guard lock(mu);
    closed = true;
    cv.notify_all();
  }
  void release(std::size_t n) {
    std::lock_guard lock(mu);
    queued = n > queued ? 0 : queued - n;
    if (queued <= limit) cv.notify_all();
  }
  void schedule();  // posts flush() to the loop
  void flush();     // on the loop
};

struct WriteReq {
  uv_write_t req;
  Conn* conn;
  std::string data;
  std::size_t stream_bytes;  // to release from the stream once written
  std::shared_ptr<Stream> stream;
};

}  // namespace

struct LoopServer::Impl {
  LoopServerOptions opts;
  LoopHandler handler;
  std::vector<std::shared_ptr<LoopCtx>> loops;
  std::vector<std::thread> threads;

  std::atomic<std::size_t> open{0};
  std::atomic<std::size_t> in_flight{0};
  std::atomic<bool> stopping{false};

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopped = false;
  bool started = false;

  std::mutex start_mu;
  std::condition_variable start_cv;
  std::size_t loops_started = 0;
  std::exception_ptr start_error;

  struct StreamThread {
    std::thread thread;
    std::shared_ptr<Stream> stream;
  };
  std::atomic<std::size_t> streams_running{0};
  std::mutex streams_mu;
  std::list<StreamThread> streams;
  bool streams_closed = false;

  void answered() {
    if (in_flight.fetch_sub(1) == 1 && stopping.load()) {
      std::lock_guard lock(stop_mu);
      stop_cv.notify_all();
    }
  }
  bool start_stream(const std::shared_ptr<Stream>& stream,
                    std::function<void(const std::function<bool(std::string_view)>&)> producer);
  void run_loop(std::size_t index);
  void shutdown_loops();
};

namespace {

struct LoopCtx {
  uv_loop_t loop{};
  uv_tcp_t listener{};
  uv_poll_t wake{};  // watches wakeup
  LoopServer::Impl* server = nullptr;
  std::size_t index = 0;
  bool loop_ready = false;
  bool listener_ready = false;
  bool wake_ready = false;
  /// Wakes the loop for the inbox. Closed with the LoopCtx, not at stop: a
  /// sender may signal just after the loop finished (its post was accepted
  /// before), and it must never write to a closed, maybe reused, descriptor.
  Wakeup wakeup;

  std::mutex mu;
  std::vector<std::function<void()>> inbox;
  bool inbox_open = true;

  // Loop thread only.
  Conn* conns = nullptr;  // intrusive list of open connections
  std::size_t conn_count = 0;
  bool draining = false;
  bool shutting_down = false;
  bool finish_requested = false;  // by shutdown(), run after the inbox batch
  bool finished = false;
  std::string scratch;  // the read buffer handed to libuv

  LoopCtx() = default;
  LoopCtx(const LoopCtx&) = delete;
  LoopCtx& operator=(const LoopCtx&) = delete;

  bool post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu);
      if (!inbox_open) return false;
      inbox.push_back(std::move(fn));
    }
    wakeup.signal();
    return true;
  }
  /// The eventfd is readable: reset it (before taking the inbox, so a later
  /// post signals again), then run what was posted.
  void on_wake() {
    wakeup.clear();
    drain_inbox();
  }
  void drain_inbox() {
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard lock(mu);
      batch.swap(inbox);
    }
    for (auto& fn : batch) {
      try {
        fn();
      } catch (const std::exception& e) {
        log::error("loop server: posted task failed", {{"error", e.what()}});
      } catch (...) {
        log::error("loop server: posted task failed");
      }
    }
    batch.clear();
    {
      std::lock_guard lock(mu);  // hand the capacity back for the next wake
      if (inbox.empty()) inbox.swap(batch);
    }
    if (finish_requested) finish();
  }

  void begin_drain();
  void shutdown();
  void finish();
  void close_listener() {
    if (listener_ready && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener))) {
      uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
    }
  }
};

enum class Phase : std::uint8_t {
  idle,        // no byte of the next request yet
  head,        // reading the request line and headers
  body,        // reading the body
  handler,     // handed to the handler, not answered
  responding,  // answer queued (or streaming), waiting for it to be written
  lingering,   // last answer written, write side shut, discarding input
};

enum class TimerKind : std::uint8_t { none, idle, read, write, linger };

enum class Chunk : std::uint8_t { size, data, data_crlf, trailer };

struct Conn {
  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_shutdown_t shutdown_req{};
  LoopCtx* ctx;
  LoopServer::Impl* server;
  std::shared_ptr<ConnLink> link;
  Conn* prev = nullptr;
  Conn* next = nullptr;
  std::string peer;

  std::string in;
  std::size_t pos = 0;        // parse offset in `in`
  std::size_t head_scan = 0;  // bytes of the head already searched for its end
  Phase phase = Phase::idle;
  TimerKind timer_kind = TimerKind::none;
  int handles = 2;
  int pending_writes = 0;
  bool closing = false;
  bool processing = false;
  bool reading = false;
  bool peer_eof = false;
  bool counted = false;            // in server->in_flight
  bool response_complete = false;  // the whole answer is queued
  bool close_after = false;        // close once the answer is written
  std::size_t linger_bytes = 0;
  std::uint64_t write_queued = 0;  // bytes ever handed to uv_write
  std::uint64_t write_mark = 0;    // written() when the write timer was armed

  // The request being read.
  std::uint64_t seq = 0;
  HttpRequest req;
  bool http10 = false;
  bool keep_alive = true;
  bool head_method = false;
  bool chunked = false;
  bool expect_continue = false;
  std::size_t content_length = 0;
  Chunk chunk_state = Chunk::size;
  std::size_t chunk_left = 0;
  std::size_t trailer_bytes = 0;
  std::size_t body_raw = 0;  // chunked: raw bytes consumed (framing and all)

  std::shared_ptr<Stream> stream;

  Conn(LoopCtx* c, LoopServer::Impl* s) : ctx(c), server(s) {}

  const LoopServerOptions& opts() const { return server->opts; }
  uv_stream_t* handle() { return reinterpret_cast<uv_stream_t*>(&tcp); }

  void start_reading();
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void process();
  enum class Parsed { more, done, error };
  Parsed parse();
  Parsed parse_head();
  Parsed parse_body();
  Parsed parse_chunks();
  Parsed fail(int status, std::string_view code, std::string_view message);
  void dispatch();
  void respond(HttpResponse&& response);
  void respond_error(int status, std::string_view code, std::string_view message);
  void write(std::string&& data, std::size_t stream_bytes = 0);
  void write_view(std::string_view data);
  void on_written(WriteReq* w, int status);
  void on_drained();
  void finish_response();
  void stream_flush(std::string&& data, bool end, bool failed);
  void linger();
  void set_timer(TimerKind kind, bool rearm = false);
  /// The write timer while a write is pending, else `otherwise`.
  void set_timer_unless_writing(TimerKind otherwise) {
    set_timer(pending_writes > 0 ? TimerKind::write : otherwise);
  }
  /// Bytes of the queued writes that reached the kernel so far.
  std::uint64_t written() { return write_queued - uv_stream_get_write_queue_size(handle()); }
  void on_timer();
  void close();
  void reset_request();
};

struct ServerMetrics {
  metrics::Gauge& open = metrics::Registry::global().gauge(
      "sb_edge_http_connections", "Client connections open on the edge's event loops");
  metrics::Counter& refused = metrics::Registry::global().counter(
      "sb_edge_http_connections_refused_total",
      "Client connections answered 503 and closed: over http.max_connections or stopping");
};
ServerMetrics& server_metrics() {
  static ServerMetrics m;
  return m;
}

void on_conn_closed(uv_handle_t* h) {
  auto* c = static_cast<Conn*>(h->data);
  if (--c->handles > 0) return;
  LoopCtx* ctx = c->ctx;
  LoopServer::Impl* server = c->server;
  delete c;
  server_metrics().open.set(static_cast<double>(server->open.fetch_sub(1) - 1));
  if (--ctx->conn_count == 0 && ctx->shutting_down) ctx->finish();
}

void alloc_cb(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(h->data);
  auto& s = c->ctx->scratch;
  *buf = uv_buf_init(s.data(), static_cast<unsigned>(s.size()));
}

void read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  static_cast<Conn*>(s->data)->on_read(nread, buf);
}

void write_cb(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  w->conn->on_written(w, status);
}

void timer_cb(uv_timer_t* t) {
  static_cast<Conn*>(t->data)->on_timer();
}

void shutdown_cb(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (status < 0 && status != UV_ECANCELED) c->close();
}

void wake_cb(uv_poll_t* p, int status, int) {
  if (status < 0) log::error("loop server: inbox poll failed", {{"error", uv_strerror(status)}});
  static_cast<LoopCtx*>(p->data)->on_wake();
}

void deliver(const std::shared_ptr<ConnLink>& link, std::uint64_t seq, HttpResponse&& response) {
  Conn* c = link->conn;
  if (c == nullptr || c->closing || c->seq != seq || c->phase != Phase::handler) return;
  c->respond(std::move(response));
}

HttpResponse internal_error() {
  return error_response(500, "internal_error", "the request was not answered");
}

}  // namespace

struct Reply::State {
  std::shared_ptr<ConnLink> link;
  std::uint64_t seq = 0;
  std::atomic<bool> sent{false};

  State(std::shared_ptr<ConnLink> l, std::uint64_t s) : link(std::move(l)), seq(s) {}
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    if (sent.load(std::memory_order_relaxed)) return;
    LoopCtx* ctx = link->ctx.get();
    if (tls_loop == ctx) {
      deliver(link, seq, internal_error());
      return;
    }
    ctx->post([link = link, seq = seq] { deliver(link, seq, internal_error()); });
  }
};

bool Reply::send(HttpResponse response) const {
  if (!state_ || state_->sent.exchange(true)) return false;
  LoopCtx* ctx = state_->link->ctx.get();
  if (tls_loop == ctx) {
    Conn* c = state_->link->conn;
    if (c == nullptr || c->closing || c->seq != state_->seq || c->phase != Phase::handler) {
      return false;
    }
    c->respond(std::move(response));
    return true;
  }
  return ctx->post([state = state_, r = std::move(response)]() mutable {
    deliver(state->link, state->seq, std::move(r));
  });
}

uv_loop_t* Reply::loop() const noexcept {
  return state_ ? &state_->link->ctx->loop : nullptr;
}

// ---- Stream ----------------------------------------------------------------

bool Stream::write(std::string_view data) {
  std::unique_lock lock(mu);
  if (closed) return false;
  if (data.empty()) return true;
  const std::size_t before = pending.size();
  if (chunked) {
    append_hex(pending, data.size());
    pending += "\r\n";
    pending += data;
    pending += "\r\n";
  } else {
    pending += data;
  }
  queued += pending.size() - before;
  const bool post = !scheduled;
  scheduled = true;
  if (post) {
    lock.unlock();
    schedule();
    lock.lock();
  }
  cv.wait(lock, [&] { return closed || queued <= limit; });
  return !closed;
}

void Stream::finish(bool ok) {
  bool post = false;
  {
    std::lock_guard lock(mu);
    ended = true;
    failed = !ok;
    post = !scheduled;
    scheduled = true;
  }
  if (post) schedule();
}

void Stream::schedule() {
  // The flush finds the stream through its connection: only the connection's
  // current stream is flushed, so a stale post is dropped.
  const bool ok = link->ctx->post([link = link, seq = seq, s = this] {
    Conn* conn = link->conn;
    if (conn == nullptr || conn->closing || conn->seq != seq || conn->stream.get() != s) return;
    conn->stream->flush();
  });
  if (!ok) close();
}

void Stream::flush() {
  std::string data;
  bool end = false;
  bool cut = false;
  {
    std::lock_guard lock(mu);
    data.swap(pending);
    scheduled = false;
    end = ended;
    cut = failed;
  }
  link->conn->stream_flush(std::move(data), end, cut);
}

bool LoopServer::Impl::start_stream(
    const std::shared_ptr<Stream>& stream,
    std::function<void(const std::function<bool(std::string_view)>&)> producer) {
  std::lock_guard lock(streams_mu);
  if (streams_closed) return false;
  for (auto it = streams.begin(); it != streams.end();) {
    if (it->stream->done.load()) {
      it->thread.join();
      it = streams.erase(it);
    } else {
      ++it;
    }
  }
  auto& entry = streams.emplace_back();
  entry.stream = stream;
  try {
    entry.thread = std::thread([this, s = stream, producer = std::move(producer)] {
      const std::function<bool(std::string_view)> write = [&s](std::string_view d) {
        return s->write(d);
      };
      bool ok = true;
      try {
        producer(write);
      } catch (const std::exception& e) {
        ok = false;
        log::error("loop server: stream producer failed", {{"error", e.what()}});
      } catch (...) {
        ok = false;
      }
      s->finish(ok);
      streams_running.fetch_sub(1);
      s->done.store(true);
    });
  } catch (...) {
    streams.pop_back();
    return false;
  }
  return true;
}

// ---- Conn ------------------------------------------------------------------

void Conn::start_reading() {
  if (reading || closing) return;
  if (uv_read_start(handle(), alloc_cb, read_cb) == 0) {
    reading = true;
  } else {
    close();
  }
}

void Conn::set_timer(TimerKind kind, bool rearm) {
  if (closing || (kind == timer_kind && !rearm)) return;
  timer_kind = kind;
  std::uint64_t ms = 0;
  switch (kind) {
    case TimerKind::none:
      uv_timer_stop(&timer);
      return;
    case TimerKind::idle:
      ms = ms_of(opts().keep_alive);
      break;
    case TimerKind::read:
      ms = ms_of(opts().read_timeout);
      break;
    case TimerKind::write:
      ms = ms_of(opts().write_timeout);
      write_mark = written();
      break;
    case TimerKind::linger:
      ms = ms_of(std::min(opts().read_timeout, kMaxLinger));
      break;
  }
  uv_timer_start(&timer, timer_cb, ms, 0);
}

void Conn::on_timer() {
  const TimerKind kind = timer_kind;
  timer_kind = TimerKind::none;
  if (kind == TimerKind::write && pending_writes > 0 && written() > write_mark) {
    // A large write is still going but the client took bytes since the timer
    // was armed (libuv reports a write only once it is whole): a fresh
    // deadline. A client that takes nothing for a whole period is cut off.
    set_timer(TimerKind::write, true);
    return;
  }
  if (kind == TimerKind::read && pending_writes == 0 &&
      (phase == Phase::head || phase == Phase::body)) {
    respond_error(408, "request_timeout", "the request did not arrive in time");
    return;
  }
  close();
}

void Conn::close() {
  if (closing) return;
  closing = true;
  link->conn = nullptr;
  if (stream) stream->close();
  if (counted) {
    counted = false;
    server->answered();
  }
  if (prev)
    prev->next = next;
  else
    ctx->conns = next;
  if (next) next->prev = prev;
  prev = next = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_conn_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_conn_closed);
}

void Conn::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (closing) return;
  if (nread < 0) {
    if (nread != UV_EOF || phase == Phase::lingering || phase == Phase::idle ||
        phase == Phase::head || phase == Phase::body || stream) {
      close();
      return;
    }
    // Half-closed after a request: answer it (and any complete ones read
    // ahead), then close.
    peer_eof = true;
    uv_read_stop(handle());
    reading = false;
    return;
  }
  if (nread == 0) return;
  const auto n = static_cast<std::size_t>(nread);
  if (phase == Phase::lingering) {
    linger_bytes += n;
    if (linger_bytes > kMaxLingerBytes) close();
    return;
  }
  in.append(buf->base, n);
  if (phase == Phase::handler || phase == Phase::responding) {
    if (in.size() - pos > kMaxReadAhead) {
      uv_read_stop(handle());
      reading = false;
    }
    return;
  }
  process();
}

void Conn::reset_request() {
  req.method.clear();
  req.path.clear();
  req.query.clear();
  req.headers.clear();
  req.body.clear();
  req.remote_addr.clear();
  http10 = false;
  keep_alive = true;
  head_method = false;
  chunked = false;
  expect_continue = false;
  content_length = 0;
  chunk_state = Chunk::size;
  chunk_left = 0;
  trailer_bytes = 0;
  body_raw = 0;
  head_scan = 0;
}

void Conn::process() {
  if (processing) return;
  processing = true;
  while (!closing && (phase == Phase::idle || phase == Phase::head || phase == Phase::body)) {
    const Parsed r = parse();
    if (r == Parsed::error) break;
    if (r == Parsed::more) {
      if (peer_eof) {
        close();
      } else if (phase == Phase::idle) {
        if (!reading) start_reading();
        set_timer(TimerKind::idle);
      } else {
        if (!reading) start_reading();
        set_timer_unless_writing(TimerKind::read);  // e.g. a "100 Continue" still queued
      }
      break;
    }
    dispatch();
  }
  processing = false;
}

Conn::Parsed Conn::fail(int status, std::string_view code, std::string_view message) {
  respond_error(status, code, message);
  return Parsed::error;
}

Conn::Parsed Conn::parse() {
  if (phase == Phase::idle) {
    // Tolerate empty lines before a request (RFC 9112 2.2).
    while (pos < in.size() && (in[pos] == '\r' || in[pos] == '\n')) ++pos;
    if (pos == in.size()) {
      in.clear();
      pos = 0;
      if (in.capacity() > kKeepBufferBytes) std::string().swap(in);
      return Parsed::more;
    }
    phase = Phase::head;
    ++seq;
  }
  if (phase == Phase::head) {
    const Parsed r = parse_head();
    if (r != Parsed::done) return r;
  }
  return parse_body();
}

Conn::Parsed Conn::parse_head() {
  const std::string_view all(in.data() + pos, in.size() - pos);
  const std::size_t from = head_scan > 3 ? head_scan - 3 : 0;
  const std::size_t end = all.find("\r\n\r\n", from);
  const std::size_t line_end = all.find("\r\n");
  if (end == std::string_view::npos) {
    head_scan = all.size();
    if (line_end == std::string_view::npos) {
      if (all.size() > kMaxRequestLine) return fail(414, "uri_too_long", "request line too long");
    } else if (line_end > kMaxRequestLine) {
      return fail(414, "uri_too_long", "request line too long");
    } else if (all.size() - line_end > opts().max_header_bytes + 4) {  // + the blank line
      return fail(431, "headers_too_large", "request headers too large");
    }
    return Parsed::more;
  }
  if (line_end > kMaxRequestLine) return fail(414, "uri_too_long", "request line too long");
  if (end - line_end > opts().max_header_bytes) {
    return fail(431, "headers_too_large", "request headers too large");
  }

  // Request line: METHOD SP target SP HTTP/1.x
  std::string_view line = all.substr(0, line_end);
  const std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) {
    return fail(400, "invalid_request", "malformed request line");
  }
  const std::string_view method = line.substr(0, sp1);
  for (char ch : method) {
    const auto c = static_cast<unsigned char>(ch);
    if (!is_tchar(c) || (c >= 'a' && c <= 'z')) {
      return fail(400, "invalid_request", "invalid method");
    }
  }
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) {
    return fail(400, "invalid_request", "malformed request line");
  }
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  for (char ch : target) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return fail(400, "invalid_request", "invalid request target");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return fail(400, "invalid_request", "malformed request line");
  }
  if (version[5] != '1') {
    return fail(505, "http_version_not_supported", "only HTTP/1.x is supported");
  }
  http10 = version[7] == '0';
  keep_alive = !http10;
  req.method.assign(method);
  head_method = method == "HEAD";

  // Absolute form: keep the path.
  if (target.front() != '/' && target.size() > 7) {
    const std::size_t scheme = target.find("://");
    if (scheme != std::string_view::npos && scheme > 0 && scheme < 6) {
      target.remove_prefix(scheme + 3);
      const std::size_t slash = target.find_first_of("/?");
      if (slash == std::string_view::npos) {
        target = "/";
      } else {
        target.remove_prefix(slash);
      }
    }
  }
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) {
    req.path.assign(target);
  } else {
    req.path.assign(target.substr(0, q));
    req.query.assign(target.substr(q + 1));
  }
  if (req.path.empty()) req.path = "/";

  // Headers.
  bool have_length = false;
  bool have_te = false;
  std::size_t count = 0;
  for (std::size_t i = line_end + 2; i < end;) {
    const std::size_t e = all.find("\r\n", i);
    if (e == i) break;
    ++count;
    i = e + 2;
  }
  if (count > opts().max_headers) {
    return fail(431, "headers_too_large", "too many request headers");
  }
  req.headers.reserve(count);
  std::size_t i = line_end + 2;
  while (i < end + 2) {
    const std::size_t e = all.find("\r\n", i);
    const std::string_view h = all.substr(i, e - i);
    i = e + 2;
    if (h.empty()) break;
    const std::size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return fail(400, "invalid_request", "malformed header");
    }
    const std::string_view name = h.substr(0, colon);
    for (char ch : name) {
      if (!is_tchar(static_cast<unsigned char>(ch))) {
        return fail(400, "invalid_request", "malformed header");
      }
    }
    std::size_t vb = colon + 1;
    std::size_t ve = h.size();
    while (vb < ve && (h[vb] == ' ' || h[vb] == '\t')) ++vb;
    while (ve > vb && (h[ve - 1] == ' ' || h[ve - 1] == '\t')) --ve;
    const std::string_view value = h.substr(vb, ve - vb);
    for (char ch : value) {
      const auto c = static_cast<unsigned char>(ch);
      if ((c < 0x20 && c != '\t') || c == 0x7f) {
        return fail(400, "invalid_request", "malformed header");
      }
    }
    auto& header = req.headers.emplace_back();
    header.name.resize(name.size());
    for (std::size_t k = 0; k < name.size(); ++k) header.name[k] = to_lower(name[k]);
    header.value.assign(value);
    const std::string_view n = header.name;
    switch (n.size()) {
      case 10:
        if (n == "connection") {
          if (text::has_token(value, "close")) {
            keep_alive = false;
          } else if (http10 && text::has_token(value, "keep-alive")) {
            keep_alive = true;
          }
        }
        break;
      case 14:
        if (n == "content-length") {
          std::size_t v = 0;
          const auto r = std::from_chars(value.data(), value.data() + value.size(), v);
          if (value.empty() || r.ec != std::errc() || r.ptr != value.data() + value.size()) {
            return fail(400, "invalid_request", "invalid Content-Length");
          }
          if (have_length && v != content_length) {
            return fail(400, "invalid_request", "conflicting Content-Length");
          }
          have_length = true;
          content_length = v;
        }
        break;
      case 17:
        if (n == "transfer-encoding") {
          // Only chunked is supported (RFC 9112 6.1: else 501).
          if (have_te) return fail(400, "invalid_request", "repeated Transfer-Encoding");
          if (!text::iequals(value, "chunked")) {
            return fail(501, "not_implemented", "unsupported Transfer-Encoding");
          }
          have_te = true;
        }
        break;
      case 6:
        if (n == "expect" && text::iequals(value, "100-continue")) expect_continue = true;
        break;
      default:
        break;
    }
  }
  if (have_te && have_length) {
    return fail(400, "invalid_request", "both Content-Length and Transfer-Encoding");
  }
  chunked = have_te;
  pos += end + 4;
  head_scan = 0;
  if (content_length > opts().max_body_bytes) {
    return fail(413, "body_too_large", "request body too large");
  }
  if (expect_continue && !http10 && (chunked || content_length > 0) && pos == in.size()) {
    write_view(kContinue);
    if (closing) return Parsed::error;
  }
  phase = Phase::body;
  return Parsed::done;
}

Conn::Parsed Conn::parse_body() {
  if (!chunked) {
    if (in.size() - pos < content_length) return Parsed::more;
    if (content_length > 0) {
      req.body.assign(in.data() + pos, content_length);
      pos += content_length;
    }
    return Parsed::done;
  }
  // Chunked: the raw bytes (framing, extensions, trailers) count against the
  // limit too, and what is decoded is dropped from `in` as it goes, so one
  // request buffers at most about max_body_bytes + max_header_bytes plus a
  // read, whatever its chunks look like.
  const std::size_t start = pos;
  const Parsed r = parse_chunks();
  if (r != Parsed::more) return r;
  body_raw += pos - start;
  in.erase(0, pos);
  pos = 0;
  return Parsed::more;
}

Conn::Parsed Conn::parse_chunks() {
  // Framing allowance: 1/8 of the body (small chunks), the trailers, and a
  // couple of maximal chunk lines.
  const std::size_t raw_limit = opts().max_body_bytes + opts().max_body_bytes / 8 +
                                opts().max_header_bytes + 2 * kMaxChunkLine;
  const std::size_t start = pos;
  while (true) {
    if (body_raw + (pos - start) > raw_limit) {
      return fail(413, "body_too_large", "request body too large");
    }
    switch (chunk_state) {
      case Chunk::size: {
        const std::string_view rest(in.data() + pos, in.size() - pos);
        const std::size_t e = rest.find("\r\n");
        if (e == std::string_view::npos) {
          if (rest.size() >= kMaxChunkLine) {  // its CRLF cannot fit any more
            return fail(400, "invalid_request", "chunk size line too long");
          }
          return Parsed::more;
        }
        if (e + 2 > kMaxChunkLine) {
          return fail(400, "invalid_request", "chunk size line too long");
        }
        std::size_t size = 0;
        const auto r = std::from_chars(rest.data(), rest.data() + e, size, 16);
        if (r.ec != std::errc() || r.ptr == rest.data()) {
          return fail(400, "invalid_request", "invalid chunk size");
        }
        const char* p = r.ptr;
        while (p < rest.data() + e && (*p == ' ' || *p == '\t')) ++p;
        if (p != rest.data() + e && *p != ';') {
          return fail(400, "invalid_request", "invalid chunk size");
        }
        if (size > opts().max_body_bytes || req.body.size() + size > opts().max_body_bytes) {
          return fail(413, "body_too_large", "request body too large");
        }
        pos += e + 2;
        if (size == 0) {
          chunk_state = Chunk::trailer;
        } else {
          chunk_left = size;
          chunk_state = Chunk::data;
        }
        break;
      }
      case Chunk::data: {
        const std::size_t take = std::min(chunk_left, in.size() - pos);
        if (take == 0) return Parsed::more;
        req.body.append(in.data() + pos, take);
        pos += take;
        chunk_left -= take;
        if (chunk_left == 0) chunk_state = Chunk::data_crlf;
        break;
      }
      case Chunk::data_crlf:
        if (in.size() - pos < 2) return Parsed::more;
        if (in[pos] != '\r' || in[pos + 1] != '\n') {
          return fail(400, "invalid_request", "malformed chunk");
        }
        pos += 2;
        chunk_state = Chunk::size;
        break;
      case Chunk::trailer: {
        const std::string_view rest(in.data() + pos, in.size() - pos);
        const std::size_t e = rest.find("\r\n");
        if (e == std::string_view::npos) {
          if (trailer_bytes + rest.size() > opts().max_header_bytes) {
            return fail(431, "headers_too_large", "request trailers too large");
          }
          return Parsed::more;
        }
        pos += e + 2;
        if (e == 0) return Parsed::done;
        trailer_bytes += e + 2;
        if (trailer_bytes > opts().max_header_bytes) {
          return fail(431, "headers_too_large", "request trailers too large");
        }
        break;
      }
    }
  }
}

void Conn::dispatch() {
  // Drop what was consumed; keep bytes read ahead for the next request.
  if (pos == in.size()) {
    in.clear();
  } else {
    in.erase(0, pos);
  }
  pos = 0;
  phase = Phase::handler;
  set_timer_unless_writing(TimerKind::none);  // a "100 Continue" may still be queued
  response_complete = false;
  if (ctx->draining) keep_alive = false;
  req.remote_addr = peer;
  counted = true;
  server->in_flight.fetch_add(1);
  auto state = std::make_shared<Reply::State>(link, seq);
  HttpRequest request = std::move(req);
  req = HttpRequest{};
  try {
    server->handler(std::move(request), Reply(std::move(state)));
  } catch (const std::exception& e) {
    // The Reply is gone unanswered: the client got (or gets) a 500.
    log::error("loop server: handler failed", {{"error", e.what()}});
  } catch (...) {
    log::error("loop server: handler failed");
  }
}

void Conn::respond_error(int status, std::string_view code, std::string_view message) {
  phase = Phase::handler;
  keep_alive = false;
  respond(error_response(status, code, message));
}

void Conn::respond(HttpResponse&& response) {
  if (closing) return;
  if (response.status < 200 || response.status > 599) {
    // A final answer only: a 1xx would leave the request unanswered on a
    // keep-alive connection (the next response would be taken for it).
    log::warn("loop server: invalid response status", {{"status", response.status}});
    response = error_response(502, "upstream_error", "invalid status from the service");
  }
  if (response.stream && !head_method) {
    if (server->streams_running.fetch_add(1) >= opts().max_streams) {
      server->streams_running.fetch_sub(1);
      response = error_response(503, "overloaded", "too many streamed responses");
    }
  }
  const bool streaming = response.stream && !head_method;
  if (streaming && http10) keep_alive = false;  // unframed: the end is the close
  phase = Phase::responding;
  set_timer_unless_writing(TimerKind::none);  // a "100 Continue" may still be queued
  // `stopping`: stop() began, this loop may not have run begin_drain() yet.
  if (!keep_alive || ctx->draining || server->stopping.load(std::memory_order_relaxed)) {
    close_after = true;
  }
  const bool no_body = no_body_status(response.status);

  std::size_t size = 96 + response.content_type.size();
  for (const auto& h : response.headers) size += h.name.size() + h.value.size() + 4;
  const bool with_body = !streaming && !no_body && !head_method;
  if (with_body) size += response.body.size();
  std::string out;
  out.reserve(size);
  out += "HTTP/1.1 ";
  append_uint(out, static_cast<std::uint64_t>(response.status));
  out += ' ';
  out += reason(response.status);
  out += "\r\n";
  // Nothing from the service may end a header line early or add one.
  std::size_t dropped = 0;
  if (!response.content_type.empty() && !valid_header_value(response.content_type)) {
    response.content_type.clear();
    ++dropped;
  }
  const bool own_type = !response.content_type.empty();
  for (const auto& h : response.headers) {
    if (!valid_header_name(h.name) || !valid_header_value(h.value)) {
      ++dropped;
      continue;
    }
    if (hop_by_hop_any_case(h.name)) continue;
    if (own_type && text::iequals(h.name, "content-type")) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  if (own_type) {
    out += "Content-Type: ";
    out += response.content_type;
    out += "\r\n";
  }
  if (streaming || (response.stream && !http10)) {
    if (!http10) out += "Transfer-Encoding: chunked\r\n";
  } else if (!no_body) {
    out += "Content-Length: ";
    append_uint(out, response.body.size());
    out += "\r\n";
  }
  if (close_after) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (with_body) out += response.body;
  if (dropped > 0) {
    log::debug("loop server: invalid response headers dropped",
               {{"dropped", dropped}, {"status", response.status}});
  }

  if (counted && streaming) {
    // A stream is not waited for by stop(): it is ended.
    counted = false;
    server->answered();
  }
  if (streaming) {
    auto s = std::make_shared<Stream>();
    s->link = link;
    s->seq = seq;
    s->chunked = !http10;
    s->limit = opts().stream_buffer_bytes;
    stream = s;
    write(std::move(out));
    if (closing) {  // the write failed: no producer will run
      server->streams_running.fetch_sub(1);
      return;
    }
    if (!server->start_stream(s, std::move(response.stream))) {
      server->streams_running.fetch_sub(1);
      close();
    }
    return;
  }
  response_complete = true;
  write(std::move(out));
  if (!closing && pending_writes == 0) finish_response();
}

void Conn::write_view(std::string_view data) {
  std::string copy(data);
  write(std::move(copy));
}

void Conn::write(std::string&& data, std::size_t stream_bytes) {
  if (closing) return;
  std::size_t off = 0;
  if (pending_writes == 0) {
    uv_buf_t b = uv_buf_init(data.data(), static_cast<unsigned>(data.size()));
    const int n = uv_try_write(handle(), &b, 1);
    if (n >= 0 && static_cast<std::size_t>(n) == data.size()) {
      if (stream_bytes > 0 && stream) stream->release(stream_bytes);
      return;
    }
    if (n < 0 && n != UV_EAGAIN) {
      close();
      return;
    }
    if (n > 0) off = static_cast<std::size_t>(n);
  }
  auto* w = new WriteReq{};
  w->conn = this;
  w->data = std::move(data);
  w->stream_bytes = stream_bytes;
  if (stream_bytes > 0) w->stream = stream;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data() + off, static_cast<unsigned>(w->data.size() - off));
  if (uv_write(&w->req, handle(), &b, 1, write_cb) != 0) {
    delete w;
    close();
    return;
  }
  write_queued += b.len;
  // A fresh deadline for the first pending write; else keep the running one
  // (and arm it if another timer replaced it).
  if (++pending_writes == 1 || timer_kind != TimerKind::write) {
    set_timer(TimerKind::write, true);
  }
}

void Conn::on_written(WriteReq* w, int status) {
  --pending_writes;
  if (w->stream) w->stream->release(w->stream_bytes);
  delete w;
  if (closing) return;
  if (status < 0) {
    close();
    return;
  }
  if (pending_writes > 0) {
    set_timer(TimerKind::write, true);  // progress: a fresh deadline
    return;
  }
  on_drained();
}

void Conn::on_drained() {
  if (phase == Phase::responding && response_complete) {
    finish_response();
  } else if (timer_kind == TimerKind::write) {
    set_timer(phase == Phase::body || phase == Phase::head ? TimerKind::read : TimerKind::none,
              true);
  }
}

void Conn::finish_response() {
  if (counted) {
    counted = false;
    server->answered();
  }
  if (close_after || ctx->draining) {
    linger();
    return;
  }
  phase = Phase::idle;
  reset_request();
  if (processing) {
    set_timer(TimerKind::idle);  // process() goes on with what is read ahead
    return;
  }
  process();
}

void Conn::linger() {
  phase = Phase::lingering;
  in.clear();
  pos = 0;
  if (peer_eof) {
    close();
    return;
  }
  shutdown_req.data = this;
  if (uv_shutdown(&shutdown_req, handle(), shutdown_cb) != 0) {
    close();
    return;
  }
  start_reading();
  set_timer(TimerKind::linger, true);
}

void Conn::stream_flush(std::string&& data, bool end, bool failed) {
  const std::size_t n = data.size();
  if (n > 0) write(std::move(data), n);
  if (closing || !end) return;
  if (failed) {
    close();  // no last chunk: the client sees a cut body
    return;
  }
  stream.reset();
  if (!http10) write_view("0\r\n\r\n");
  if (closing) return;
  response_complete = true;
  if (pending_writes == 0) finish_response();
}

// ---- Loop ------------------------------------------------------------------

namespace {

void on_connection(uv_stream_t* listener, int status) {
  if (status < 0) return;
  auto* ctx = static_cast<LoopCtx*>(listener->data);
  LoopServer::Impl* server = ctx->server;
  auto* c = new Conn(ctx, server);
  uv_tcp_init(&ctx->loop, &c->tcp);
  uv_timer_init(&ctx->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->link = std::make_shared<ConnLink>();
  c->link->conn = c;
  c->link->ctx = server->loops[ctx->index];
  c->next = ctx->conns;
  if (ctx->conns) ctx->conns->prev = c;
  ctx->conns = c;
  ++ctx->conn_count;
  const std::size_t open = server->open.fetch_add(1) + 1;
  server_metrics().open.set(static_cast<double>(open));
  if (uv_accept(listener, c->handle()) != 0) {
    c->close();
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (addr.ss_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, buf, sizeof(buf));
    } else if (addr.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, buf, sizeof(buf));
    }
    c->peer = buf;
  }
  if (open > server->opts.max_connections || ctx->draining) {
    server_metrics().refused.inc();
    c->phase = Phase::handler;
    c->keep_alive = false;
    c->close_after = true;
    auto r = error_response(503, "overloaded", "too many connections");
    r.headers.push_back({"Retry-After", "1"});
    c->respond(std::move(r));
    return;
  }
  c->start_reading();
  c->set_timer(TimerKind::idle);
}

}  // namespace

void LoopCtx::begin_drain() {
  if (draining) return;
  draining = true;
  close_listener();
  for (Conn* c = conns; c != nullptr;) {
    Conn* next = c->next;
    if (c->phase == Phase::idle) c->close();
    c = next;
  }
}

void LoopCtx::shutdown() {
  if (shutting_down) return;
  shutting_down = true;
  draining = true;
  close_listener();
  while (conns != nullptr) conns->close();
  // Else the last connection's close callback finishes.
  if (conn_count == 0) finish_requested = true;
}

void LoopCtx::finish() {
  if (finished) return;
  finished = true;
  {
    std::lock_guard lock(mu);
    inbox_open = false;
  }
  drain_inbox();  // what was accepted runs (replies are dropped: no connections)
  if (server->opts.on_loop_stop) {
    try {
      server->opts.on_loop_stop(index);
    } catch (const std::exception& e) {
      log::error("loop server: on_loop_stop failed", {{"error", e.what()}});
    }
  }
  if (wake_ready) uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr);  // the fd: ~LoopCtx
}

void LoopServer::Impl::run_loop(std::size_t index) {
  LoopCtx* ctx = loops[index].get();
  tls_loop = ctx;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // a write to a gone peer fails with EPIPE
  bool ok = true;
  try {
    if (opts.on_loop_start) opts.on_loop_start(index, &ctx->loop);
  } catch (...) {
    ok = false;
    std::lock_guard lock(start_mu);
    if (!start_error) start_error = std::current_exception();
  }
  {
    std::lock_guard lock(start_mu);
    ++loops_started;
    start_cv.notify_all();
  }
  if (!ok) {
    ctx->draining = true;
    ctx->close_listener();
  }
  uv_run(&ctx->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&ctx->loop);
  for (int i = 0; rc == UV_EBUSY && i < 100; ++i) {
    uv_run(&ctx->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&ctx->loop);
  }
  if (rc != 0) log::error("loop server: a loop kept open handles", {{"loop", index}});
  tls_loop = nullptr;
}

void LoopServer::Impl::shutdown_loops() {
  for (auto& l : loops) {
    auto ctx = l;
    if (!ctx->post([ctx] { ctx->shutdown(); })) {
      // Inbox closed already (on_loop_start failed path finishes itself).
    }
  }
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
  threads.clear();
}

// ---- LoopServer ------------------------------------------------------------

LoopServer::LoopServer(LoopServerOptions options, LoopHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(options);
  if (impl_->opts.loops < 1) impl_->opts.loops = 1;
  impl_->handler = std::move(handler);
}

LoopServer::~LoopServer() {
  stop(Clock::now());
}

namespace {

// The loops share the port through SO_REUSEPORT. The first socket binds
// without it, so a port some other process listens on — another edge's
// SO_REUSEPORT group included — fails with "address in use" instead of
// being silently shared; the option is set once the bind has succeeded, and
// the other loops' sockets join with it.
int open_listener(const sockaddr* addr, socklen_t len, std::string_view what, bool first) {
  const int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  auto fail = [fd](const std::string& message) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error(message + ": " + std::strerror(err));
  };
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) fail("setsockopt");
  if (!first && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    fail("setsockopt");
  }
  if (::bind(fd, addr, len) != 0) fail("bind " + std::string(what));
  if (first && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    fail("setsockopt");
  }
  return fd;
}

}  // namespace

int LoopServer::start() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.stop_mu);
    if (s.started || s.stopped) throw std::runtime_error("loop server: start() called twice");
    s.started = true;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(s.opts.port);
  const char* host = s.opts.host.empty() ? nullptr : s.opts.host.c_str();
  if (const int rc = ::getaddrinfo(host, port_text.c_str(), &hints, &res); rc != 0) {
    throw std::runtime_error("resolve " + s.opts.host + ": " + gai_strerror(rc));
  }
  sockaddr_storage addr{};
  const auto addr_len = static_cast<socklen_t>(res->ai_addrlen);
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  const std::string what = s.opts.host + ":" + port_text;

  const auto n = static_cast<std::size_t>(s.opts.loops);
  std::vector<int> fds;
  int port = s.opts.port;
  try {
    for (std::size_t i = 0; i < n; ++i) {
      fds.push_back(
          open_listener(reinterpret_cast<const sockaddr*>(&addr), addr_len, what, i == 0));
      if (i == 0) {
        sockaddr_storage bound{};
        socklen_t bl = sizeof(bound);
        ::getsockname(fds[0], reinterpret_cast<sockaddr*>(&bound), &bl);
        if (bound.ss_family == AF_INET6) {
          port = ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
          reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(static_cast<uint16_t>(port));
        } else {
          port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
          reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(static_cast<uint16_t>(port));
        }
      }
    }
  } catch (...) {
    for (int fd : fds) ::close(fd);
    throw;
  }

  // The loops, their listeners and inboxes; nothing runs yet.
  std::string error;
  for (std::size_t i = 0; i < n; ++i) {
    std::shared_ptr<LoopCtx> ctx;
    try {
      ctx = std::make_shared<LoopCtx>();
    } catch (const std::exception& e) {  // no eventfd
      if (error.empty()) error = e.what();
      ::close(fds[i]);
      continue;
    }
    ctx->server = &s;
    ctx->index = i;
    ctx->scratch.resize(kReadChunk);
    s.loops.push_back(ctx);
    if (uv_loop_init(&ctx->loop) != 0) {
      error = "uv_loop_init failed";
      ::close(fds[i]);
      continue;
    }
    ctx->loop_ready = true;
    if (const int prc = uv_poll_init(&ctx->loop, &ctx->wake, ctx->wakeup.fd()); prc != 0) {
      if (error.empty()) error = std::string("uv_poll_init: ") + uv_strerror(prc);
    } else {
      ctx->wake.data = ctx.get();
      ctx->wake_ready = true;
      if (const int src = uv_poll_start(&ctx->wake, UV_READABLE, wake_cb);
          src != 0 && error.empty()) {
        error = std::string("uv_poll_start: ") + uv_strerror(src);
      }
    }
    uv_tcp_init(&ctx->loop, &ctx->listener);
    ctx->listener.data = ctx.get();
    ctx->listener_ready = true;
    int rc = uv_tcp_open(&ctx->listener, fds[i]);
    if (rc != 0) {
      ::close(fds[i]);
    } else {
      rc = uv_listen(reinterpret_cast<uv_stream_t*>(&ctx->listener), 1024, on_connection);
    }
    if (rc != 0 && error.empty()) error = std::string("listen ") + what + ": " + uv_strerror(rc);
  }
  if (!error.empty()) {
    for (auto& ctx : s.loops) {
      if (!ctx->loop_ready) continue;
      ctx->close_listener();
      {
        std::lock_guard lock(ctx->mu);
        ctx->inbox_open = false;
      }
      if (ctx->wake_ready) uv_close(reinterpret_cast<uv_handle_t*>(&ctx->wake), nullptr);
      uv_run(&ctx->loop, UV_RUN_DEFAULT);
      uv_loop_close(&ctx->loop);
    }
    s.loops.clear();
    throw std::runtime_error(error);
  }

  for (std::size_t i = 0; i < n; ++i) s.threads.emplace_back([&s, i] { s.run_loop(i); });
  std::exception_ptr failed;
  {
    std::unique_lock lock(s.start_mu);
    s.start_cv.wait(lock, [&] { return s.loops_started == n; });
    failed = s.start_error;
  }
  if (failed) {
    stop(Clock::now());
    std::rethrow_exception(failed);
  }
  return port;
}

void LoopServer::stop(std::chrono::steady_clock::time_point deadline) {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.stop_mu);
    if (s.stopped) return;
    s.stopped = true;
  }
  s.stopping.store(true);
  if (s.loops.empty()) return;
  for (auto& l : s.loops) {
    auto ctx = l;
    ctx->post([ctx] { ctx->begin_drain(); });
  }
  {
    std::unique_lock lock(s.stop_mu);
    s.stop_cv.wait_until(lock, deadline, [&] { return s.in_flight.load() == 0; });
  }
  std::list<Impl::StreamThread> streams;
  {
    std::lock_guard lock(s.streams_mu);
    s.streams_closed = true;
    streams.swap(s.streams);
  }
  for (auto& t : streams) t.stream->close();
  for (auto& t : streams) {
    if (t.thread.joinable()) t.thread.join();
  }
  s.shutdown_loops();
}

bool LoopServer::post(std::size_t index, std::function<void()> fn) {
  if (impl_->loops.empty()) return false;
  return impl_->loops[index % impl_->loops.size()]->post(std::move(fn));
}

std::size_t LoopServer::loops() const noexcept {
  return static_cast<std::size_t>(impl_->opts.loops);
}

std::size_t LoopServer::connections() const noexcept {
  return impl_->open.load();
}

}  // namespace sb::edge

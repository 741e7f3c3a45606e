// LoopServer against real loopback sockets: a raw client writes bytes and
// reads whole responses, so framing, limits and connection handling are
// seen as a client sees them. Every wait has a deadline.

#include "../../../services/edge/src/loop_server.hpp"
#include "switchboard/shared/metrics.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace sb::edge {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kWait = 5s;

/// Polls `pred` until it holds or the deadline passes (for state that no
/// condition variable announces, e.g. a server's connection count).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds within = kWait) {
  const auto deadline = Clock::now() + within;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::vector<std::string> chunks;  // for a chunked body
  /// The header's value, "<none>" when absent.
  std::string get(const std::string& name) const {
    const auto* v = header(name);
    return v ? *v : "<none>";
  }
  const std::string* header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? nullptr : &it->second;
  }
};

class Client {
 public:
  /// `rcvbuf` > 0: a small receive buffer (a client that takes bytes slowly
  /// is then felt by the server at once, not after megabytes).
  explicit Client(int port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  /// Closes with a reset (RST), not a FIN.
  void reset() {
    const linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close();
  }
  /// Each recv takes at most `bytes`, after a pause of `pause` (a slow reader).
  void pace(std::size_t bytes, std::chrono::milliseconds pause) {
    recv_max_ = bytes;
    pause_ = pause;
  }

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  /// Reads one whole response (a 1xx one too). `head_request`: no body.
  std::optional<Response> read(bool head_request = false) {
    const auto deadline = Clock::now() + kWait;
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(deadline)) return std::nullopt;
    }
    Response r;
    const std::string head = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    std::size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
    r.status = std::stoi(status_line.substr(9, 3));
    while (line_end != std::string::npos) {
      const std::size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const std::size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (r.headers.count(name)) return std::nullopt;  // no duplicate headers expected
      r.headers[name] = value;
    }
    if (r.status < 200 || r.status == 204 || r.status == 304 || head_request) return r;
    if (const auto* te = r.header("transfer-encoding")) {
      if (*te != "chunked") return std::nullopt;
      while (true) {
        std::size_t e;
        while ((e = buf_.find("\r\n")) == std::string::npos) {
          if (!fill(deadline)) return std::nullopt;
        }
        const std::size_t size = std::stoul(buf_.substr(0, e), nullptr, 16);
        buf_.erase(0, e + 2);
        while (buf_.size() < size + 2) {
          if (!fill(deadline)) return std::nullopt;
        }
        if (buf_.compare(size, 2, "\r\n") != 0) return std::nullopt;
        if (size == 0) {
          buf_.erase(0, 2);
          return r;
        }
        r.chunks.push_back(buf_.substr(0, size));
        r.body += r.chunks.back();
        buf_.erase(0, size + 2);
      }
    }
    const auto* cl = r.header("content-length");
    if (cl == nullptr) return std::nullopt;
    const std::size_t size = std::stoul(*cl);
    while (buf_.size() < size) {
      if (!fill(deadline)) return std::nullopt;
    }
    r.body = buf_.substr(0, size);
    buf_.erase(0, size);
    return r;
  }

  /// True once the server closed its side (read returns 0 or a reset) with
  /// nothing more to read.
  bool closed_by_peer() {
    const auto deadline = Clock::now() + kWait;
    while (true) {
      if (!buf_.empty()) return false;
      if (!fill(deadline)) return eof_;
    }
  }
  /// Receives until at least `n` bytes are waiting (false at the deadline).
  bool receive(std::size_t n) {
    const auto deadline = Clock::now() + kWait;
    while (buf_.size() < n) {
      if (!fill(deadline)) return false;
    }
    return true;
  }
  /// Bytes received that no read() consumed.
  const std::string& pending() const { return buf_; }

 private:
  bool fill(Clock::time_point deadline) {
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      if (pause_.count() > 0) std::this_thread::sleep_for(pause_);
      char tmp[16384];
      const ssize_t n = ::recv(fd_, tmp, std::min(sizeof(tmp), recv_max_), 0);
      if (n <= 0) {
        eof_ = true;
        return false;
      }
      buf_.append(tmp, static_cast<std::size_t>(n));
      return true;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
  std::size_t recv_max_ = 16384;
  std::chrono::milliseconds pause_{0};
};

/// Open file descriptors of this process.
std::size_t open_fds() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

HttpResponse text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

/// Echoes what it parsed: "METHOD path?query|body".
void echo(HttpRequest req, Reply reply) {
  std::string out = req.method + " " + req.path;
  if (!req.query.empty()) out += "?" + req.query;
  out += "|" + req.body;
  auto r = text(200, std::move(out));
  if (const auto* v = req.header("x-test")) r.headers.push_back({"x-echo", *v});
  r.headers.push_back({"x-remote", req.remote_addr});
  reply.send(std::move(r));
}

/// Replies the handler parked, for answering from the test thread.
class Parked {
 public:
  void push(HttpRequest req, Reply reply) {
    std::lock_guard lock(mu_);
    items_.emplace_back(std::move(req), std::move(reply));
    cv_.notify_all();
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return items_.size() >= n; });
  }
  std::pair<HttpRequest, Reply> take(std::size_t i) {
    std::lock_guard lock(mu_);
    return std::move(items_.at(i));
  }
  void clear() {
    std::lock_guard lock(mu_);
    items_.clear();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<HttpRequest, Reply>> items_;
};

LoopServerOptions small_options() {
  LoopServerOptions o;
  o.loops = 2;
  o.max_body_bytes = 1024;
  o.max_header_bytes = 2048;
  o.max_headers = 20;
  return o;
}

TEST(LoopServer, KeepAliveGetsOnOneConnection) {
  LoopServer server(small_options(), echo);
  const int port = server.start();
  ASSERT_GT(port, 0);
  Client c(port);
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send("GET /a%20b/" + std::to_string(i) +
                       "?x=1&y=2 HTTP/1.1\r\nHost: x\r\nX-Test: \t v 1 \t\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "GET /a%20b/" + std::to_string(i) + "?x=1&y=2|");
    EXPECT_EQ(r->get("x-echo"), "v 1");
    EXPECT_EQ(r->get("x-remote"), "127.0.0.1");
    EXPECT_EQ(r->get("content-type"), "text/plain");
    EXPECT_EQ(r->header("connection"), nullptr);
  }
  EXPECT_EQ(server.connections(), 1u);
}

TEST(LoopServer, AbsoluteFormTargetKeepsThePath) {
  LoopServer server(small_options(), echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("GET http://example.com/p/q?z=1 HTTP/1.1\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /p/q?z=1|");
}

TEST(LoopServer, PostWithContentLength) {
  LoopServer server(small_options(), echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("POST /p HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello"));
  ASSERT_TRUE(c.send(" world"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "POST /p|hello world");
  // Duplicates that agree are accepted.
  ASSERT_TRUE(c.send("POST /q HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "POST /q|ok");
}

TEST(LoopServer, ChunkedRequestBody) {
  LoopServer server(small_options(), echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"));
  ASSERT_TRUE(c.send("lo\r\n6;ext=1\r\n world\r\n"));
  ASSERT_TRUE(c.send("0\r\nX-Trailer: t\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "POST /c|hello world");
  // The connection goes on after the trailers.
  ASSERT_TRUE(c.send("GET /next HTTP/1.1\r\n\r\n"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /next|");
}

TEST(LoopServer, ChunkedBodyOverTheLimitIs413) {
  LoopServer server(small_options(), echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk(600, 'x');
  ASSERT_TRUE(c.send("258\r\n" + chunk + "\r\n258\r\n" + chunk + "\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->body.find("\"body_too_large\""), std::string::npos);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(LoopServer, ChunkSizeLineTooLongIs400) {
  LoopServer server(small_options(), echo);
  const int port = server.start();
  const std::string head = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  {
    // The whole line (CRLF included) has arrived: still over the limit.
    Client c(port);
    ASSERT_TRUE(c.send(head + "1;ext=" + std::string(5000, 'e') + "\r\nx\r\n0\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("\"invalid_request\""), std::string::npos);
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    // No CRLF yet.
    Client c(port);
    ASSERT_TRUE(c.send(head + "1;ext=" + std::string(5000, 'e')));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    // Extensions within the limit are fine.
    Client c(port);
    ASSERT_TRUE(c.send(head + "2;ext=" + std::string(4000, 'e') + "\r\nok\r\n0\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST /c|ok");
  }
}

TEST(LoopServer, ChunkFramingCountsAgainstTheBodyLimit) {
  // Tiny chunks with large extensions: few body bytes, many raw ones. The
  // server must refuse once the raw bytes pass about max_body_bytes +
  // max_header_bytes, not buffer until the decoded body reaches its limit.
  const auto options = small_options();
  LoopServer server(options, echo);
  const int port = server.start();
  {
    Client c(port);
    const std::string chunk = "1;e=" + std::string(4000, 'e') + "\r\nx\r\n";
    std::string payload = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::size_t bound = options.max_body_bytes + options.max_header_bytes + (64 << 10);
    while (payload.size() + chunk.size() <= bound) payload += chunk;
    // Not finished: the only way to an answer is the limit.
    (void)c.send(payload);
    auto r = c.read();
    ASSERT_TRUE(r) << "no answer after " << payload.size() << " bytes";
    EXPECT_TRUE(r->status == 413 || r->status == 400) << r->status;
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    // Small chunks of an ordinary body within the limit are fine.
    Client c(port);
    std::string payload = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 1000; ++i) payload += "1\r\ny\r\n";
    ASSERT_TRUE(c.send(payload + "0\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST /c|" + std::string(1000, 'y'));
  }
}

TEST(LoopServer, ExpectContinue) {
  LoopServer server(small_options(), echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("PUT /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 100);
  ASSERT_TRUE(c.send("data"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "PUT /e|data");

  // Over the limit: 413 at once, no 100.
  ASSERT_TRUE(c.send("PUT /e HTTP/1.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(LoopServer, PipelinedRequestsAreAnsweredInOrder) {
  Parked parked;
  std::atomic<int> calls{0};
  LoopServer server(small_options(), [&](HttpRequest req, Reply reply) {
    if (calls.fetch_add(1) == 0) {
      parked.push(std::move(req), std::move(reply));  // the first one waits
    } else {
      echo(std::move(req), std::move(reply));
    }
  });
  Client c(server.start());
  ASSERT_TRUE(
      c.send("GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /3 "
             "HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(parked.wait_for(1));
  // One request at a time: the others wait for the first answer.
  EXPECT_EQ(calls.load(), 1);
  auto [req, reply] = parked.take(0);
  std::thread([reply = reply] { EXPECT_TRUE(reply.send(text(200, "first"))); }).join();
  auto r1 = c.read();
  auto r2 = c.read();
  auto r3 = c.read();
  ASSERT_TRUE(r1 && r2 && r3);
  EXPECT_EQ(r1->body, "first");
  EXPECT_EQ(r2->body, "POST /2|abc");
  EXPECT_EQ(r3->body, "GET /3|");
  EXPECT_EQ(calls.load(), 3);
}

TEST(LoopServer, RepliesFromAnotherThreadAcrossConnections) {
  Parked parked;
  LoopServer server(small_options(), [&](HttpRequest req, Reply reply) {
    EXPECT_NE(reply.loop(), nullptr);
    parked.push(std::move(req), std::move(reply));
  });
  const int port = server.start();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<Client>(port));
    ASSERT_TRUE(clients.back()->send("GET /c" + std::to_string(i) + " HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(parked.wait_for(static_cast<std::size_t>(i) + 1));
  }
  // Answered in reverse order from a worker; each client gets its own.
  std::thread worker([&] {
    for (int i = 3; i >= 0; --i) {
      auto [req, reply] = parked.take(static_cast<std::size_t>(i));
      EXPECT_TRUE(reply.send(text(200, "for " + req.path)));
      EXPECT_FALSE(reply.send(text(200, "twice")));
    }
  });
  worker.join();
  for (int i = 0; i < 4; ++i) {
    auto r = clients[static_cast<std::size_t>(i)]->read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "for /c" + std::to_string(i));
  }
  // Each connection carries on.
  parked.clear();
  ASSERT_TRUE(clients[2]->send("GET /again HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(parked.wait_for(1));
  parked.take(0).second.send(text(201, "again"));
  auto r = clients[2]->read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
}

TEST(LoopServer, LargeContentLengthIs413WithoutReadingTheBody) {
  std::atomic<int> calls{0};
  LoopServer server(small_options(), [&](HttpRequest req, Reply reply) {
    ++calls;
    echo(std::move(req), std::move(reply));
  });
  Client c(server.start());
  ASSERT_TRUE(c.send("POST /big HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(r->body.find("\"code\":\"body_too_large\""), std::string::npos);
  EXPECT_EQ(r->get("connection"), "close");
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(calls.load(), 0);
}

TEST(LoopServer, HugeHeadersAre431) {
  LoopServer server(small_options(), echo);
  const int port = server.start();
  {
    Client c(port);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nX-Big: " + std::string(5000, 'a') + "\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
    EXPECT_NE(r->body.find("\"headers_too_large\""), std::string::npos);
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    // Before the end of the head arrives.
    Client c(port);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nX-Big: " + std::string(5000, 'a')));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
  }
  {
    Client c(port);
    std::string req = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 30; ++i) req += "X-H" + std::to_string(i) + ": v\r\n";
    ASSERT_TRUE(c.send(req + "\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
  }
  {
    Client c(port);
    ASSERT_TRUE(c.send("GET /" + std::string(9000, 'u') + " HTTP/1.1\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 414);
    EXPECT_NE(r->body.find("\"uri_too_long\""), std::string::npos);
  }
}

TEST(LoopServer, MalformedRequestsAre400) {
  LoopServer server(small_options(), echo);
  const int port = server.start();
  const std::vector<std::pair<std::string, int>> cases = {
      {"GARBAGE\r\n\r\n", 400},
      {"get / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"GET / HTTX/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
  };
  for (const auto& [request, status] : cases) {
    Client c(port);
    ASSERT_TRUE(c.send(request));
    auto r = c.read();
    ASSERT_TRUE(r) << request;
    EXPECT_EQ(r->status, status) << request;
    if (status == 400) {
      EXPECT_NE(r->body.find("\"invalid_request\""), std::string::npos);
    }
    EXPECT_TRUE(c.closed_by_peer()) << request;
  }
}

TEST(LoopServer, Http10ClosesUnlessKeepAlive) {
  LoopServer server(small_options(), echo);
  const int port = server.start();
  {
    Client c(port);
    ASSERT_TRUE(c.send("GET /old HTTP/1.0\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "GET /old|");
    EXPECT_EQ(r->get("connection"), "close");
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    Client c(port);
    ASSERT_TRUE(c.send("GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get("connection"), "keep-alive");
    ASSERT_TRUE(c.send("GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "GET /2|");
  }
}

TEST(LoopServer, ConnectionCloseCloses) {
  LoopServer server(small_options(), echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /bye|");
  EXPECT_EQ(r->get("connection"), "close");
  EXPECT_TRUE(c.closed_by_peer());
  c.close();
  EXPECT_TRUE(eventually([&] { return server.connections() == 0; }));
}

TEST(LoopServer, HalfClosedClientStillGetsItsAnswers) {
  LoopServer server(small_options(), echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"));
  c.shutdown_write();
  auto r1 = c.read();
  auto r2 = c.read();
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r2->body, "GET /2|");
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(LoopServer, HeadHasTheLengthButNoBody) {
  LoopServer server(small_options(), [](HttpRequest, Reply reply) {
    auto r = text(200, "twelve bytes");
    r.headers.push_back({"Content-Length", "999"});  // hop-by-hop: ours wins
    r.headers.push_back({"Connection", "upgrade"});
    reply.send(std::move(r));
  });
  Client c(server.start());
  ASSERT_TRUE(c.send("HEAD /h HTTP/1.1\r\n\r\n"));
  auto r = c.read(/*head_request=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get("content-length"), "12");
  EXPECT_EQ(r->header("connection"), nullptr);
  ASSERT_TRUE(c.send("GET /h HTTP/1.1\r\n\r\n"));  // framing intact
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "twelve bytes");
}

TEST(LoopServer, NoBodyStatusesHaveNoLength) {
  LoopServer server(small_options(), [](HttpRequest, Reply reply) {
    HttpResponse r;
    r.status = 204;
    r.content_type.clear();
    reply.send(std::move(r));
  });
  Client c(server.start());
  ASSERT_TRUE(c.send("DELETE /x HTTP/1.1\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->header("content-length"), nullptr);
  EXPECT_EQ(r->header("content-type"), nullptr);
  EXPECT_TRUE(c.pending().empty());
}

TEST(LoopServer, ResponseHeadersThatWouldInjectAreDropped) {
  LoopServer server(small_options(), [](HttpRequest, Reply reply) {
    auto r = text(200, "ok");
    r.content_type = "text/plain\r\nX-Evil: 1";
    r.headers.push_back({"x-a", "v\r\nSet-Cookie: a=b"});
    r.headers.push_back({"x-b", "v\nSet-Cookie: c=d"});
    r.headers.push_back({"x-c", std::string("v\0w", 3)});
    r.headers.push_back({"Set-Cookie: e=f\r\nx-d", "v"});
    r.headers.push_back({"bad name", "v"});
    r.headers.push_back({"", "v"});
    r.headers.push_back({"x-good", "fine\tvalue"});
    reply.send(std::move(r));
  });
  Client c(server.start());
  for (int round = 0; round < 2; ++round) {  // the framing holds: the connection goes on
    ASSERT_TRUE(c.send("GET /h HTTP/1.1\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "ok");
    EXPECT_EQ(r->get("x-good"), "fine\tvalue");
    EXPECT_EQ(r->get("content-length"), "2");
    for (const char* name :
         {"set-cookie", "x-a", "x-b", "x-c", "x-d", "x-evil", "bad name", "content-type", ""}) {
      EXPECT_EQ(r->header(name), nullptr) << name;
    }
    EXPECT_EQ(r->headers.size(), 2u);
    EXPECT_TRUE(c.pending().empty());
  }
}

TEST(LoopServer, InvalidFinalStatusIs502) {
  std::atomic<bool> produced{false};
  LoopServer server(small_options(), [&](HttpRequest req, Reply reply) {
    if (req.path == "/ok") {
      reply.send(text(200, "fine"));
      return;
    }
    auto r = text(std::stoi(req.path.substr(1)), "body");
    if (req.query == "stream") {
      r.stream = [&](const std::function<bool(std::string_view)>& write) {
        produced = true;
        write("streamed");
      };
    }
    reply.send(std::move(r));
  });
  Client c(server.start());
  for (const std::string target : {"/100", "/101", "/199", "/0", "/-1", "/600", "/100?stream"}) {
    ASSERT_TRUE(c.send("GET " + target + " HTTP/1.1\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 502) << target;
    EXPECT_NE(r->body.find("\"upstream_error\""), std::string::npos) << target;
    // Keep-alive framing intact: the next request gets its own answer.
    ASSERT_TRUE(c.send("GET /ok HTTP/1.1\r\n\r\n"));
    r = c.read();
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 200) << target;
    EXPECT_EQ(r->body, "fine") << target;
  }
  EXPECT_FALSE(produced.load());
}

TEST(LoopServer, StreamedResponse) {
  LoopServer server(small_options(), [](HttpRequest, Reply reply) {
    HttpResponse r;
    r.content_type = "text/event-stream";
    r.stream = [](const std::function<bool(std::string_view)>& write) {
      for (int i = 0; i < 5; ++i) {
        if (!write("part" + std::to_string(i) + ";")) return;
      }
      write("");  // skipped: not the last chunk
    };
    reply.send(std::move(r));
  });
  Client c(server.start());
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(c.send("GET /s HTTP/1.1\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get("transfer-encoding"), "chunked");
    EXPECT_EQ(r->get("content-type"), "text/event-stream");
    EXPECT_EQ(r->header("content-length"), nullptr);
    EXPECT_EQ(r->body, "part0;part1;part2;part3;part4;");
    EXPECT_GE(r->chunks.size(), 1u);
  }
}

TEST(LoopServer, StreamWriteFailsOnceTheClientIsGone) {
  std::atomic<bool> write_failed{false};
  std::atomic<std::size_t> written{0};
  auto options = small_options();
  options.stream_buffer_bytes = 64 * 1024;
  LoopServer server(options, [&](HttpRequest, Reply reply) {
    HttpResponse r;
    r.stream = [&](const std::function<bool(std::string_view)>& write) {
      const std::string piece(16 * 1024, 'z');
      const auto deadline = Clock::now() + 10s;
      while (Clock::now() < deadline) {
        if (!write(piece)) {
          write_failed = true;
          return;
        }
        written += piece.size();
      }
    };
    reply.send(std::move(r));
  });
  Client c(server.start());
  ASSERT_TRUE(c.send("GET /s HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return written.load() > 0; }));
  c.close();
  EXPECT_TRUE(eventually([&] { return write_failed.load(); }));
  EXPECT_TRUE(eventually([&] { return server.connections() == 0; }));
}

TEST(LoopServer, StreamBackpressureBoundsWhatIsQueued) {
  // The client reads nothing: the producer must block, not buffer everything.
  std::atomic<std::size_t> written{0};
  std::atomic<bool> done{false};
  auto options = small_options();
  options.stream_buffer_bytes = 32 * 1024;
  LoopServer server(options, [&](HttpRequest, Reply reply) {
    HttpResponse r;
    r.stream = [&](const std::function<bool(std::string_view)>& write) {
      const std::string piece(8 * 1024, 'b');
      for (int i = 0; i < 100000 && write(piece); ++i) written += piece.size();
      done = true;
    };
    reply.send(std::move(r));
  });
  Client c(server.start());
  ASSERT_TRUE(c.send("GET /s HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return written.load() > 0; }));
  // Socket buffers absorb some megabytes at most, far below 800 MB.
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(done.load());
  EXPECT_LT(written.load(), std::size_t{64} << 20);
  server.stop(Clock::now());  // ends the stream: its write returns false
  EXPECT_TRUE(done.load());
}

TEST(LoopServer, TooManyStreamsIs503) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> running{0};
  auto options = small_options();
  options.max_streams = 1;
  LoopServer server(options, [&](HttpRequest, Reply reply) {
    HttpResponse r;
    r.stream = [&](const std::function<bool(std::string_view)>& write) {
      ++running;
      write("x");
      std::unique_lock lock(mu);
      cv.wait_for(lock, kWait, [&] { return release; });
    };
    reply.send(std::move(r));
  });
  const int port = server.start();
  Client a(port);
  ASSERT_TRUE(a.send("GET /s HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return running.load() == 1; }));
  Client b(port);
  ASSERT_TRUE(b.send("GET /s HTTP/1.1\r\n\r\n"));
  auto r = b.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("\"overloaded\""), std::string::npos);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  r = a.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "x");
}

TEST(LoopServer, StreamSlotIsFreedWhenTheHeadCannotBeWritten) {
  // The handler answers on the loop once the client has reset the
  // connection: writing the head fails and closes it, and the stream slot
  // (max_streams = 1) must be given back.
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool go = false;
  auto options = small_options();
  options.max_streams = 1;
  LoopServer server(options, [&](HttpRequest req, Reply reply) {
    HttpResponse r;
    r.stream = [](const std::function<bool(std::string_view)>& write) { write("ok"); };
    if (req.path == "/first") {
      std::unique_lock lock(mu);
      entered = true;
      cv.notify_all();
      cv.wait_for(lock, kWait, [&] { return go; });  // test only: holds the loop
    }
    reply.send(std::move(r));
  });
  const int port = server.start();
  {
    Client a(port);
    ASSERT_TRUE(a.send("GET /first HTTP/1.1\r\n\r\n"));
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return entered; }));
    a.reset();
    go = true;
    cv.notify_all();
  }
  // (Had the reset come too late, the first stream ran and ended: either way
  // the slot is free again.)
  std::optional<Response> r;
  EXPECT_TRUE(eventually([&] {
    Client b(port);
    if (!b.send("GET /second HTTP/1.1\r\n\r\n")) return false;
    r = b.read();
    return r && r->status == 200;
  })) << (r ? r->status : 0);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "ok");
}

TEST(LoopServer, DroppedReplyIs500) {
  Parked parked;
  LoopServer server(small_options(), [&](HttpRequest req, Reply reply) {
    if (req.path == "/drop") return;  // dropped on the loop
    parked.push(std::move(req), std::move(reply));
  });
  Client c(server.start());
  ASSERT_TRUE(c.send("GET /drop HTTP/1.1\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("\"internal_error\""), std::string::npos);
  // Dropped on another thread.
  ASSERT_TRUE(c.send("GET /keep HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(parked.wait_for(1));
  std::thread([&] { parked.clear(); }).join();
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
}

TEST(LoopServer, HandlerThatThrowsIs500) {
  LoopServer server(small_options(), [](HttpRequest, Reply) { throw std::runtime_error("boom"); });
  Client c(server.start());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
}

// The value of an unlabelled metric in /metrics' text (0 when absent).
double metric(const std::string& name) {
  const auto text = sb::metrics::Registry::global().render();
  const auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? 0.0 : std::stod(text.substr(at + name.size() + 2));
}

TEST(LoopServer, OverMaxConnectionsIs503) {
  const double refused_before = metric("sb_edge_http_connections_refused_total");
  auto options = small_options();
  options.max_connections = 2;
  LoopServer server(options, echo);
  const int port = server.start();
  Client a(port);
  Client b(port);
  for (Client* c : {&a, &b}) {
    ASSERT_TRUE(c->send("GET / HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(c->read());
  }
  Client extra(port);
  ASSERT_TRUE(extra.connected());
  auto r = extra.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->get("retry-after"), "1");
  EXPECT_EQ(r->get("connection"), "close");
  EXPECT_NE(r->body.find("\"overloaded\""), std::string::npos);
  EXPECT_TRUE(extra.closed_by_peer());
  EXPECT_GE(metric("sb_edge_http_connections_refused_total"), refused_before + 1);
  // Room again once one closes.
  extra.close();
  a.close();
  ASSERT_TRUE(eventually([&] { return server.connections() == 1; }));
  Client again(port);
  ASSERT_TRUE(again.send("GET /ok HTTP/1.1\r\n\r\n"));
  r = again.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(LoopServer, IdleKeepAliveCloses) {
  auto options = small_options();
  options.keep_alive = 100ms;
  LoopServer server(options, echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(c.read());
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(LoopServer, SlowRequestTimesOut) {
  auto options = small_options();
  options.read_timeout = 100ms;
  LoopServer server(options, echo);
  Client c(server.start());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n"));  // never finished
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 408);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(LoopServer, WriteTimeoutClosesAClientThatDoesNotRead) {
  auto options = small_options();
  options.write_timeout = 100ms;
  std::atomic<bool> sent{false};
  LoopServer server(options, [&](HttpRequest, Reply reply) {
    reply.send(text(200, std::string(std::size_t{32} << 20, 'w')));  // beyond socket buffers
    sent = true;
  });
  Client c(server.start());
  ASSERT_TRUE(c.send("GET /big HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return sent.load(); }));
  EXPECT_EQ(server.connections(), 1u);  // still writing
  EXPECT_TRUE(eventually([&] { return server.connections() == 0; }));
}

TEST(LoopServer, WriteTimeoutSparesASlowReaderThatMakesProgress) {
  // One large write takes several write_timeouts to go out, but the client
  // takes bytes all along: it gets the whole body. One that stops reading
  // is still cut off. (The server sees progress when the kernel takes more,
  // i.e. after the client drained about a third of a send buffer that may
  // grow to 4 MB: the reader must be fast enough for that within a period.)
  auto options = small_options();
  options.write_timeout = 300ms;
  const std::size_t size = std::size_t{16} << 20;
  LoopServer server(
      options, [&](HttpRequest, Reply reply) { reply.send(text(200, std::string(size, 's'))); });
  const int port = server.start();
  {
    Client c(port, 64 << 10);
    c.pace(16 << 10, 1ms);  // at most 16 MB/s
    ASSERT_TRUE(c.send("GET /big HTTP/1.1\r\n\r\n"));
    const auto t0 = Clock::now();
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body.size(), size);
    EXPECT_GT(Clock::now() - t0, 2 * options.write_timeout);  // it did take several periods
  }
  ASSERT_TRUE(eventually([&] { return server.connections() == 0; }));
  {
    Client c(port, 64 << 10);
    ASSERT_TRUE(c.send("GET /big HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(c.receive(std::size_t{1} << 20));  // takes a little, then stalls
    EXPECT_EQ(server.connections(), 1u);
    EXPECT_TRUE(eventually([&] { return server.connections() == 0; }));
  }
}

TEST(LoopServer, StopAnswersARequestInFlight) {
  Parked parked;
  LoopServer server(small_options(), [&](HttpRequest req, Reply reply) {
    parked.push(std::move(req), std::move(reply));
  });
  const int port = server.start();
  Client idle(port);
  ASSERT_TRUE(idle.send("GET /first HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(parked.wait_for(1));
  parked.take(0).second.send(text(200, "first"));
  ASSERT_TRUE(idle.read());
  Client busy(port);
  ASSERT_TRUE(busy.send("GET /slow HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(parked.wait_for(2));

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    server.stop(Clock::now() + 10s);
    stopped = true;
  });
  // Draining: the idle connection is closed, new ones are refused.
  EXPECT_TRUE(idle.closed_by_peer());
  EXPECT_FALSE(stopped.load());
  auto reply = parked.take(1).second;
  EXPECT_TRUE(reply.send(text(200, "late but answered")));
  auto r = busy.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "late but answered");
  EXPECT_EQ(r->get("connection"), "close");
  stopper.join();
  EXPECT_TRUE(stopped.load());
  EXPECT_FALSE(server.post(0, [] {}));
  Client after(port);
  EXPECT_FALSE(after.connected() && after.send("GET / HTTP/1.1\r\n\r\n") && after.read());
}

TEST(LoopServer, StopDeadlineClosesUnansweredRequests) {
  Parked parked;
  auto server = std::make_unique<LoopServer>(small_options(), [&](HttpRequest req, Reply reply) {
    parked.push(std::move(req), std::move(reply));
  });
  Client c(server->start());
  ASSERT_TRUE(c.send("GET /never HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(parked.wait_for(1));
  const auto t0 = Clock::now();
  server->stop(Clock::now() + 100ms);
  EXPECT_LT(Clock::now() - t0, 3s);
  EXPECT_TRUE(c.closed_by_peer());
  server->stop(Clock::now());  // idempotent
  server.reset();
  // Replies outliving the server are dropped safely, and so is their drop.
  auto [req, reply] = parked.take(0);
  EXPECT_FALSE(reply.send(text(200, "too late")));
}

TEST(LoopServer, LoopHooksRunOncePerLoopOnItsThread) {
  struct PerLoop {
    uv_timer_t timer{};
  };
  std::mutex mu;
  std::map<std::size_t, std::thread::id> started;
  std::map<std::size_t, std::thread::id> stopped;
  std::map<std::size_t, PerLoop*> state;
  std::atomic<int> closed_handles{0};
  std::atomic<int> start_calls{0};
  std::atomic<int> stop_calls{0};
  auto options = small_options();
  options.loops = 3;
  options.on_loop_start = [&](std::size_t index, uv_loop_t* loop) {
    ++start_calls;
    auto* p = new PerLoop;
    uv_timer_init(loop, &p->timer);
    std::lock_guard lock(mu);
    started[index] = std::this_thread::get_id();
    state[index] = p;
  };
  options.on_loop_stop = [&](std::size_t index) {
    ++stop_calls;
    std::lock_guard lock(mu);
    stopped[index] = std::this_thread::get_id();
    // A per-loop object closes its handle: the loop must run its callback.
    PerLoop* p = state[index];
    p->timer.data = &closed_handles;
    uv_close(reinterpret_cast<uv_handle_t*>(&p->timer), [](uv_handle_t* h) {
      ++*static_cast<std::atomic<int>*>(h->data);
      delete reinterpret_cast<PerLoop*>(reinterpret_cast<char*>(h) - offsetof(PerLoop, timer));
    });
  };
  std::atomic<int> posted{0};
  {
    LoopServer server(options, echo);
    Client c(server.start());
    EXPECT_EQ(start_calls.load(), 3);  // all ran before start() returned
    EXPECT_EQ(server.loops(), 3u);
    for (std::size_t i = 0; i < 6; ++i) {
      EXPECT_TRUE(server.post(i, [&, i] {
        std::lock_guard lock(mu);
        if (started[i % 3] == std::this_thread::get_id()) ++posted;
      }));
    }
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(c.read());
    ASSERT_TRUE(eventually([&] { return posted.load() == 6; }));
  }  // the destructor stops
  EXPECT_EQ(start_calls.load(), 3);
  EXPECT_EQ(stop_calls.load(), 3);
  EXPECT_EQ(closed_handles.load(), 3);
  std::set<std::thread::id> threads;
  for (std::size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(started.count(i) && stopped.count(i));
    EXPECT_EQ(started[i], stopped[i]);
    EXPECT_NE(started[i], std::this_thread::get_id());
    threads.insert(started[i]);
  }
  EXPECT_EQ(threads.size(), 3u);
}

TEST(LoopServer, PostsFromManyThreadsAllRunWithoutLostWakeups) {
  const std::size_t fds_before = open_fds();
  {
    LoopServer server(small_options(), echo);
    server.start();
    // Bursts from several threads.
    constexpr int kThreads = 4;
    constexpr int kPosts = 20000;
    std::atomic<int> ran{0};
    std::vector<std::thread> senders;
    for (int t = 0; t < kThreads; ++t) {
      senders.emplace_back([&, t] {
        for (int i = 0; i < kPosts; ++i) {
          EXPECT_TRUE(server.post(static_cast<std::size_t>(t + i), [&] { ++ran; }));
        }
      });
    }
    for (auto& t : senders) t.join();
    EXPECT_TRUE(eventually([&] { return ran.load() == kThreads * kPosts; }));

    // Ping-pong: each post waits for the previous one to run, so every post
    // lands on a loop that just went idle (a lost wake-up hangs here).
    for (std::size_t loop = 0; loop < server.loops(); ++loop) {
      std::mutex mu;
      std::condition_variable cv;
      int done = 0;
      for (int i = 0; i < 2000; ++i) {
        ASSERT_TRUE(server.post(loop, [&] {
          std::lock_guard lock(mu);
          ++done;
          cv.notify_all();
        }));
        std::unique_lock lock(mu);
        ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return done == i + 1; })) << i;
      }
    }
  }
  // The inboxes' descriptors are closed with the server.
  EXPECT_EQ(open_fds(), fds_before);
}

TEST(LoopServer, DefaultReplyHasNoLoop) {
  Reply reply;
  EXPECT_EQ(reply.loop(), nullptr);
  EXPECT_FALSE(reply.send(HttpResponse{}));
}

TEST(LoopServer, BindFailureThrows) {
  LoopServerOptions options;
  options.host = "203.0.113.1";  // TEST-NET-3: not a local address
  LoopServer server(options, echo);
  EXPECT_THROW(server.start(), std::runtime_error);
}

// Two servers on one port (both with SO_REUSEPORT between their own loops)
// would silently share its connections: the second must fail instead.
TEST(LoopServer, APortAnotherServerListensOnIsRefused) {
  LoopServer first(small_options(), echo);
  const int port = first.start();
  ASSERT_GT(port, 0);
  auto o = small_options();
  o.port = port;
  LoopServer second(o, echo);
  try {
    second.start();
    ADD_FAILURE() << "a second server bound port " << port;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
  Client c(port);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET /still HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

}  // namespace
}  // namespace sb::edge

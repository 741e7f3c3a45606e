// LoopUpstream: the edge's non-blocking HTTP/1.1 client, against real
// loopback servers — cpp-httplib for ordinary answers, raw sockets for the
// odd ones (chunked splits, read-to-EOF, connections closed or reset under a
// pooled connection, instances that never answer). The loop runs in the
// test thread until the awaited answers arrive.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../../../services/edge/src/loop_upstream.hpp"
#include "switchboard/shared/metrics.hpp"

using namespace sb::edge;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A libuv loop run in the test thread.
class Loop {
 public:
  Loop() {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
  }
  ~Loop() {
    drain();
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "handles or requests left on the loop";
  }
  uv_loop_t* get() { return &loop_; }

  // Runs the loop until `done()` holds or `timeout` passes (a ticking timer
  // makes every turn return, so the condition is checked often).
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    const auto limit = Clock::now() + timeout;
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 2, 2);
    while (!done() && Clock::now() < limit) uv_run(&loop_, UV_RUN_ONCE);
    uv_timer_stop(&tick_);
    return done();
  }

  // Lets every close callback run (what an owner does before uv_loop_close).
  void drain() {
    if (drained_) return;
    drained_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
  }

 private:
  uv_loop_t loop_{};
  uv_timer_t tick_{};
  bool drained_ = false;
};

struct Outcome {
  int calls = 0;
  UpstreamResult result;
};

// A loop, the shared health and one LoopUpstream; checks at the end that
// every call was answered exactly once.
struct Harness {
  explicit Harness(UpstreamOptions o = {})
      : health(std::make_shared<Upstreams>(o)),
        up(std::make_unique<LoopUpstream>(loop.get(), o, health)) {}
  ~Harness() {
    up.reset();
    loop.drain();
    for (const auto& o : outcomes) EXPECT_EQ(o->calls, 1) << "done ran " << o->calls << " times";
  }

  std::shared_ptr<Outcome> start(const std::string& url, HttpRequest req,
                                 std::chrono::milliseconds budget = 5s,
                                 const std::string& instance = "i1") {
    auto o = std::make_shared<Outcome>();
    outcomes.push_back(o);
    up->call(instance, url, std::move(req), Clock::now() + budget, [o](UpstreamResult r) {
      ++o->calls;
      o->result = std::move(r);
    });
    return o;
  }

  UpstreamResult call(const std::string& url, HttpRequest req,
                      std::chrono::milliseconds budget = 5s, const std::string& instance = "i1") {
    auto o = start(url, std::move(req), budget, instance);
    EXPECT_TRUE(loop.run_until([&] { return o->calls > 0; })) << "no answer";
    return o->result;
  }

  Loop loop;  // first: outlives the LoopUpstream
  std::shared_ptr<Upstreams> health;
  std::unique_ptr<LoopUpstream> up;
  std::vector<std::shared_ptr<Outcome>> outcomes;
};

HttpRequest request(std::string method, std::string path, std::string body = {}) {
  HttpRequest r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.body = std::move(body);
  return r;
}

const std::string* find_header(const HttpResponse& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

sb::metrics::Counter& stale_counter() {
  return sb::metrics::Registry::global().counter(
      "sb_edge_upstream_stale_connections_total",
      "Pooled upstream connections found closed on use (retried on a new one)");
}

// A cpp-httplib instance on a free loopback port; counts the client
// connections it served (by remote port).
class HttpServer {
 public:
  explicit HttpServer(const std::function<void(httplib::Server&, HttpServer&)>& routes) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(80); };
    server_.set_keep_alive_max_count(100000);
    server_.set_keep_alive_timeout(5);
    server_.set_tcp_nodelay(true);  // as the platform's services do
    // cpp-httplib listens with a backlog of 5: connections beyond it are
    // dropped at SYN and retried a second later. Widen it once bound.
    int listener = -1;
    server_.set_socket_options([&listener](int fd) {
      listener = fd;
      int yes = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    routes(server_, *this);
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (listener >= 0) ::listen(listener, 1024);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    const auto limit = Clock::now() + 5s;
    while (!server_.is_running() && Clock::now() < limit) std::this_thread::yield();
  }
  ~HttpServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  void saw(const httplib::Request& req) {
    std::lock_guard lock(mu_);
    ports_.insert(req.remote_port);
  }
  std::size_t connections() {
    std::lock_guard lock(mu_);
    return ports_.size();
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::set<int> ports_;
};

// What a raw server does after reading one request.
struct Step {
  std::vector<std::string> parts;  // written one by one
  bool close = false;              // then close the connection
  bool reset = false;              // ... with a RST
  bool hold = false;               // wait for release() before closing
};
// (connection index, request index on it, the raw request) -> Step.
using Script = std::function<Step(int, int, const std::string&)>;

// A raw loopback server serving one connection at a time. A Step without
// parts and without close reads on: the instance never answers.
class RawServer {
 public:
  explicit RawServer(Script script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 128), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~RawServer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      if (conn_ >= 0) ::shutdown(conn_, SHUT_RDWR);
      cv_.notify_all();
    }
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int accepted() {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  bool wait_closed(int n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return closed_ >= n; });
  }
  int requests() {
    std::lock_guard lock(mu_);
    return static_cast<int>(requests_.size());
  }
  std::string request(std::size_t i) {
    std::lock_guard lock(mu_);
    return i < requests_.size() ? requests_[i] : std::string();
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  static bool read_request(int c, std::string& buf, std::string& out) {
    char chunk[4096];
    auto more = [&] {
      const auto n = ::read(c, chunk, sizeof chunk);
      if (n <= 0) return false;
      buf.append(chunk, static_cast<std::size_t>(n));
      return true;
    };
    while (buf.find("\r\n\r\n") == std::string::npos) {
      if (!more()) return false;
    }
    std::size_t want = buf.find("\r\n\r\n") + 4;
    const auto cl = buf.find("Content-Length: ");
    if (cl != std::string::npos && cl < want) want += std::stoul(buf.substr(cl + 16));
    while (buf.size() < want) {
      if (!more()) return false;
    }
    out = buf.substr(0, want);
    buf.erase(0, want);
    return true;
  }

  void run() {
    for (int index = 0;; ++index) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      {
        std::lock_guard lock(mu_);
        if (stop_) {
          ::close(c);
          return;
        }
        conn_ = c;
        ++accepted_;
      }
      std::string buf;
      std::string req;
      for (int r = 0; read_request(c, buf, req); ++r) {
        {
          std::lock_guard lock(mu_);
          requests_.push_back(req);
        }
        const Step step = script_(index, r, req);
        for (const auto& part : step.parts) {
          (void)::send(c, part.data(), part.size(), MSG_NOSIGNAL);
        }
        if (step.hold) {
          std::unique_lock lock(mu_);
          cv_.wait(lock, [&] { return released_ || stop_; });
          released_ = false;
        }
        if (step.reset) {
          linger l{1, 0};
          ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
          break;
        }
        if (step.close) break;
      }
      std::lock_guard lock(mu_);
      conn_ = -1;
      ::close(c);
      ++closed_;
      cv_.notify_all();
    }
  }

  Script script_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool released_ = false;
  int conn_ = -1;
  int accepted_ = 0;
  int closed_ = 0;
  std::vector<std::string> requests_;
};

const std::string kOk =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

// Answers the first request of each connection; a second one on the same
// connection is read and the connection closed unanswered (a request racing
// the instance's keep-alive timeout).
Step closing_script(int, int r, const std::string&) {
  if (r == 0) return Step{{kOk}};
  return Step{{}, true};
}

// A port nobody listens on.
int dead_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

TEST(LoopUpstream, GetReturnsStatusContentTypeHeadersAndBody) {
  std::mutex mu;
  httplib::Headers seen;
  std::string seen_query;
  HttpServer server([&](httplib::Server& s, HttpServer& self) {
    s.Get("/items", [&](const httplib::Request& req, httplib::Response& res) {
      self.saw(req);
      {
        std::lock_guard lock(mu);
        seen = req.headers;
        seen_query = req.get_param_value("a") + "," + req.get_param_value("b");
      }
      res.set_header("X-Trace", "abc");
      res.set_content("hello", "text/plain");
    });
  });
  Harness h;
  auto req = request("GET", "/items");
  req.query = "a=1&b=two";
  req.headers = {{"x-request-id", "r-1"},
                 {"host", "client.example"},
                 {"connection", "close"},
                 {"keep-alive", "timeout=1"}};
  auto r = h.call(server.url(), req);
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "hello");
  EXPECT_EQ(r.response.content_type, "text/plain");
  ASSERT_NE(find_header(r.response, "x-trace"), nullptr);
  EXPECT_EQ(*find_header(r.response, "x-trace"), "abc");
  for (const auto* hop : {"content-type", "content-length", "connection", "keep-alive"}) {
    EXPECT_EQ(find_header(r.response, hop), nullptr) << hop;
  }
  std::lock_guard lock(mu);
  EXPECT_EQ(seen_query, "1,two");
  auto header = [&](const std::string& name) {
    auto it = seen.find(name);
    return it == seen.end() ? std::string("<none>") : it->second;
  };
  EXPECT_EQ(header("x-request-id"), "r-1");
  EXPECT_EQ(header("Host"), "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(seen.count("Host"), 1u);
  EXPECT_EQ(header("Connection"), "<none>") << "hop-by-hop headers are not forwarded";
  EXPECT_EQ(header("Keep-Alive"), "<none>");
  EXPECT_EQ(header("Content-Length"), "<none>") << "a GET without a body has no length";
}

TEST(LoopUpstream, PostBodiesReachTheInstance) {
  HttpServer server([](httplib::Server& s, HttpServer&) {
    s.Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
      res.status = 201;
      res.set_content(req.body + "|" + req.get_header_value("Content-Length"), "application/json");
    });
  });
  Harness h;
  auto r = h.call(server.url(), request("POST", "/echo", R"({"a":1})"));
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_EQ(r.response.status, 201);
  EXPECT_EQ(r.response.body, R"({"a":1}|7)");
  EXPECT_EQ(r.response.content_type, "application/json");
  // An empty POST still says its length.
  r = h.call(server.url(), request("POST", "/echo"));
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_EQ(r.response.body, "|0");
  // A large body (written from the request, maybe in several writes).
  std::string big(3 * 1024 * 1024 + 17, 'x');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i % 26);
  r = h.call(server.url(), request("POST", "/echo", big));
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_EQ(r.response.body, big + "|" + std::to_string(big.size()));
}

TEST(LoopUpstream, AKeepAliveConnectionServesSequentialCalls) {
  HttpServer server([](httplib::Server& s, HttpServer& self) {
    s.Get("/ok", [&self](const httplib::Request& req, httplib::Response& res) {
      self.saw(req);
      res.set_content("ok", "text/plain");
    });
  });
  Harness h;
  for (int i = 0; i < 3; ++i) {
    auto r = h.call(server.url(), request("GET", "/ok"));
    ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
    EXPECT_EQ(r.response.body, "ok");
  }
  // HEAD: the length is announced, no body follows; the connection stays usable.
  auto head = h.call(server.url(), request("HEAD", "/ok"));
  ASSERT_EQ(head.kind, UpstreamResult::Kind::response) << head.error;
  EXPECT_EQ(head.response.status, 200);
  EXPECT_EQ(head.response.body, "");
  auto after = h.call(server.url(), request("GET", "/ok"));
  ASSERT_EQ(after.kind, UpstreamResult::Kind::response) << after.error;
  EXPECT_EQ(after.response.body, "ok");
  EXPECT_EQ(server.connections(), 1u);
}

TEST(LoopUpstream, LargeResponsesArriveWhole) {
  std::string big(5 * 1024 * 1024 + 3, 'y');
  for (std::size_t i = 0; i < big.size(); i += 1000) big[i] = static_cast<char>('a' + i % 26);
  HttpServer server([&big](httplib::Server& s, HttpServer&) {
    s.Get("/big", [&big](const httplib::Request&, httplib::Response& res) {
      res.set_content(big, "application/octet-stream");
    });
  });
  Harness h;
  auto r = h.call(server.url(), request("GET", "/big"));
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_TRUE(r.response.body == big) << "body of " << r.response.body.size() << " bytes differs";
}

TEST(LoopUpstream, ChunkedResponsesAreDecodedAndTheConnectionReused) {
  RawServer server([](int, int, const std::string&) {
    return Step{{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: te", "xt/plain\r",
                 "\n\r\n5\r\nhel", "lo\r\n6;name=value\r\n world\r", "\n0\r\nX-Trailer: t\r\n",
                 "\r\n"}};
  });
  Harness h;
  for (int i = 0; i < 2; ++i) {
    auto r = h.call(server.url(), request("GET", "/chunks"));
    ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
    EXPECT_EQ(r.response.status, 200);
    EXPECT_EQ(r.response.body, "hello world");
    EXPECT_EQ(r.response.content_type, "text/plain");
    EXPECT_EQ(find_header(r.response, "transfer-encoding"), nullptr);
  }
  EXPECT_EQ(server.accepted(), 1);
}

TEST(LoopUpstream, AResponseWithoutLengthIsReadToTheEndAndNotPooled) {
  RawServer server([](int, int, const std::string&) {
    return Step{{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", "the end"}, true};
  });
  Harness h;
  const auto stale = stale_counter().value();
  for (int i = 0; i < 2; ++i) {
    auto r = h.call(server.url(), request("GET", "/eof"));
    ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
    EXPECT_EQ(r.response.body, "until the end");
  }
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_EQ(stale_counter().value(), stale);
}

TEST(LoopUpstream, InterimResponsesAreSkipped) {
  RawServer server([](int, int, const std::string&) {
    return Step{{"HTTP/1.1 100 Continue\r\n\r\n",
                 "HTTP/1.1 201 Created\r\nContent-Length: 4\r\nLocation: /x\r\n\r\ndone"}};
  });
  Harness h;
  auto r = h.call(server.url(), request("PUT", "/x", "data"));
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_EQ(r.response.status, 201);
  EXPECT_EQ(r.response.body, "done");
  ASSERT_NE(find_header(r.response, "location"), nullptr);
  EXPECT_EQ(r.response.content_type, "");
  EXPECT_NE(server.request(0).find("\r\n\r\ndata"), std::string::npos);
}

TEST(LoopUpstream, ARefusedConnectionIsUnreachableAndEjectsAfterThree) {
  UpstreamOptions o;
  o.eject_after = 3;
  Harness h(o);
  const auto url = "http://127.0.0.1:" + std::to_string(dead_port());
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(h.health->healthy("dead")) << "ejected after " << i << " failures";
    auto r = h.call(url, request("GET", "/"), 2s, "dead");
    EXPECT_EQ(r.kind, UpstreamResult::Kind::unreachable) << r.error;
  }
  EXPECT_FALSE(h.health->healthy("dead"));
  EXPECT_TRUE(h.health->healthy("other"));
}

TEST(LoopUpstream, HttpsAndMalformedBaseUrlsFail) {
  Harness h;
  auto r = h.call("https://127.0.0.1:443", request("GET", "/"));
  EXPECT_EQ(r.kind, UpstreamResult::Kind::failed);
  EXPECT_EQ(r.error, "https upstreams are not supported");
  r = h.call("http://127.0.0.1:notaport", request("GET", "/"));
  EXPECT_EQ(r.kind, UpstreamResult::Kind::failed);
  r = h.call("http://127.0.0.1:1", request("GET", "/"), -1s);
  EXPECT_EQ(r.kind, UpstreamResult::Kind::failed);
  EXPECT_EQ(r.error, "deadline passed before the call");
}

TEST(LoopUpstream, HostNamesAreResolved) {
  HttpServer server([](httplib::Server& s, HttpServer&) {
    s.Get("/ok", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content(req.get_header_value("Host"), "text/plain");
    });
  });
  Harness h;
  const auto url = "http://localhost:" + std::to_string(server.port());
  // Two calls at once while the name is being resolved, then one more.
  auto a = h.start(url, request("GET", "/ok"));
  auto b = h.start(url, request("GET", "/ok"));
  ASSERT_TRUE(h.loop.run_until([&] { return a->calls > 0 && b->calls > 0; }));
  for (const auto& o : {a, b}) {
    ASSERT_EQ(o->result.kind, UpstreamResult::Kind::response) << o->result.error;
    EXPECT_EQ(o->result.response.body, "localhost:" + std::to_string(server.port()));
  }
  auto r = h.call(url, request("GET", "/ok"));
  EXPECT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
}

TEST(LoopUpstream, TheDeadlinePassesOnASlowInstanceAndCountsAsAFailure) {
  RawServer server([](int, int, const std::string&) { return Step{}; });  // never answers
  UpstreamOptions o;
  o.eject_after = 3;
  Harness h(o);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(h.health->healthy("slow")) << "ejected after " << i << " failures";
    const auto before = Clock::now();
    auto r = h.call(server.url(), request("GET", "/slow"), 100ms, "slow");
    EXPECT_EQ(r.kind, UpstreamResult::Kind::failed);
    EXPECT_EQ(r.error, "deadline passed");
    EXPECT_GE(Clock::now() - before, 100ms);
  }
  EXPECT_FALSE(h.health->healthy("slow"));
  EXPECT_TRUE(server.wait_closed(1)) << "a connection past its deadline is closed";
}

TEST(LoopUpstream, ServiceUnavailableAnswersCountAsFailures) {
  HttpServer server([](httplib::Server& s, HttpServer&) {
    s.Get("/busy", [](const httplib::Request&, httplib::Response& res) {
      res.status = 503;
      res.set_content("{}", "application/json");
    });
    s.Get("/broken", [](const httplib::Request&, httplib::Response& res) {
      res.status = 500;
      res.set_content("{}", "application/json");
    });
  });
  UpstreamOptions o;
  o.eject_after = 3;
  Harness h(o);
  for (int i = 0; i < 3; ++i) {
    auto r = h.call(server.url(), request("GET", "/busy"), 5s, "busy");
    ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
    EXPECT_EQ(r.response.status, 503);
    auto e = h.call(server.url(), request("GET", "/broken"), 5s, "broken");
    ASSERT_EQ(e.kind, UpstreamResult::Kind::response) << e.error;
    EXPECT_EQ(e.response.status, 500);
  }
  EXPECT_FALSE(h.health->healthy("busy"));
  EXPECT_TRUE(h.health->healthy("broken")) << "a 500 is an answer, not an unavailable instance";
}

TEST(LoopUpstream, AClosedPooledConnectionIsRetriedForAGet) {
  RawServer server(closing_script);
  UpstreamOptions o;
  o.max_idle = 60s;
  Harness h(o);
  auto first = h.call(server.url(), request("GET", "/ok"), 5s, "c1");
  ASSERT_EQ(first.kind, UpstreamResult::Kind::response) << first.error;
  const auto stale = stale_counter().value();
  // The pooled connection is closed as the request arrives: a GET is
  // repeated on a new connection.
  auto second = h.call(server.url(), request("GET", "/ok"), 5s, "c1");
  ASSERT_EQ(second.kind, UpstreamResult::Kind::response) << second.error;
  EXPECT_EQ(second.response.body, "ok");
  EXPECT_EQ(stale_counter().value(), stale + 1);
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_TRUE(h.health->healthy("c1"));
}

TEST(LoopUpstream, APostOnAClosedPooledConnectionIsNotRepeated) {
  RawServer server(closing_script);
  UpstreamOptions o;
  o.max_idle = 60s;
  Harness h(o);
  ASSERT_EQ(h.call(server.url(), request("GET", "/ok")).kind, UpstreamResult::Kind::response);
  const auto stale = stale_counter().value();
  // The instance may have read it: repeating a POST could apply it twice.
  auto r = h.call(server.url(), request("POST", "/cmd", "{}"));
  EXPECT_EQ(r.kind, UpstreamResult::Kind::failed) << r.error;
  EXPECT_EQ(server.accepted(), 1);
  EXPECT_EQ(stale_counter().value(), stale);
}

TEST(LoopUpstream, APostIsRepeatedWhenItCouldNotBeWritten) {
  // The first connection is reset (after the test says so) while pooled;
  // the loop does not run meanwhile, so the POST finds out by writing.
  RawServer server([](int conn, int, const std::string&) {
    if (conn == 0) return Step{{kOk}, false, true, true};
    return Step{{kOk}};
  });
  UpstreamOptions o;
  o.max_idle = 60s;
  Harness h(o);
  ASSERT_EQ(h.call(server.url(), request("GET", "/ok")).kind, UpstreamResult::Kind::response);
  server.release();
  ASSERT_TRUE(server.wait_closed(1));
  const auto stale = stale_counter().value();
  auto r = h.call(server.url(), request("POST", "/cmd", "{}"));
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_EQ(r.response.body, "ok");
  EXPECT_EQ(stale_counter().value(), stale + 1);
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_EQ(server.requests(), 2);
}

TEST(LoopUpstream, AnIdleConnectionPastMaxIdleIsClosed) {
  RawServer server([](int, int, const std::string&) { return Step{{kOk}}; });
  UpstreamOptions o;
  o.max_idle = 50ms;
  Harness h(o);
  ASSERT_EQ(h.call(server.url(), request("GET", "/ok")).kind, UpstreamResult::Kind::response);
  // The client closes it on its own: the server sees the end of the connection.
  std::atomic<bool> closed{false};
  std::thread waiter([&] { closed = server.wait_closed(1, 10s); });
  EXPECT_TRUE(h.loop.run_until([&] { return closed.load(); }));
  waiter.join();
  const auto stale = stale_counter().value();
  auto r = h.call(server.url(), request("GET", "/ok"));
  ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_EQ(stale_counter().value(), stale);
}

TEST(LoopUpstream, AtMostMaxIdleConnectionsArePooled) {
  HttpServer server([](httplib::Server& s, HttpServer& self) {
    s.Get("/ok", [&self](const httplib::Request& req, httplib::Response& res) {
      self.saw(req);
      res.set_content("ok", "text/plain");
    });
  });
  UpstreamOptions o;
  o.max_idle_per_instance = 1;
  Harness h(o);
  for (int wave = 0; wave < 2; ++wave) {
    std::vector<std::shared_ptr<Outcome>> all;
    for (int i = 0; i < 3; ++i) all.push_back(h.start(server.url(), request("GET", "/ok")));
    ASSERT_TRUE(h.loop.run_until([&] {
      for (const auto& x : all) {
        if (x->calls == 0) return false;
      }
      return true;
    }));
    for (const auto& x : all) EXPECT_EQ(x->result.kind, UpstreamResult::Kind::response);
  }
  EXPECT_EQ(server.connections(), 5u) << "3 new, 1 kept, 2 more new";
}

TEST(LoopUpstream, ManyConcurrentCallsToOneInstanceAllComplete) {
  HttpServer server([](httplib::Server& s, HttpServer& self) {
    s.Get(R"(/n/(\d+))", [&self](const httplib::Request& req, httplib::Response& res) {
      self.saw(req);
      res.set_content(std::string(req.matches[1]), "text/plain");
    });
  });
  Harness h;
  for (int wave = 0; wave < 2; ++wave) {
    std::vector<std::shared_ptr<Outcome>> all;
    for (int i = 0; i < 50; ++i) {
      all.push_back(h.start(server.url(), request("GET", "/n/" + std::to_string(i))));
    }
    ASSERT_TRUE(h.loop.run_until([&] {
      for (const auto& x : all) {
        if (x->calls == 0) return false;
      }
      return true;
    }));
    for (int i = 0; i < 50; ++i) {
      const auto& r = all[static_cast<std::size_t>(i)]->result;
      ASSERT_EQ(r.kind, UpstreamResult::Kind::response) << r.error;
      EXPECT_EQ(r.response.body, std::to_string(i));
    }
  }
  EXPECT_LE(server.connections(), 50u) << "the second wave reuses the pooled connections";
}

TEST(LoopUpstream, DestroyingItAnswersCallsInFlight) {
  RawServer server([](int, int, const std::string&) { return Step{}; });  // never answers
  Harness h;
  auto in_flight = h.start(server.url(), request("GET", "/slow"));
  // Maybe still resolving the name when the LoopUpstream goes.
  auto by_name = h.start("http://localhost:" + server.url().substr(17), request("GET", "/slow"));
  // A call made from a done callback while closing is answered too.
  auto chained = std::make_shared<Outcome>();
  auto nested = std::make_shared<Outcome>();
  h.outcomes.push_back(chained);
  h.outcomes.push_back(nested);
  LoopUpstream* up = h.up.get();  // h.up is already null while it is destroyed
  up->call("i1", server.url(), request("GET", "/slow"), Clock::now() + 5s,
           [up, chained, nested](UpstreamResult r) {
             ++chained->calls;
             chained->result = std::move(r);
             up->call("i1", "http://127.0.0.1:1", request("GET", "/"), Clock::now() + 5s,
                      [nested](UpstreamResult n) {
                        ++nested->calls;
                        nested->result = std::move(n);
                      });
           });
  ASSERT_TRUE(h.loop.run_until([&] { return server.requests() == 1; }));
  h.up.reset();
  for (const auto& o : {in_flight, by_name, chained, nested}) {
    EXPECT_EQ(o->calls, 1);
    EXPECT_EQ(o->result.kind, UpstreamResult::Kind::failed);
    EXPECT_EQ(o->result.error, "closed");
  }
}

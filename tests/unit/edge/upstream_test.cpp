// HTTP upstream pooling against a real loopback server that closes each
// connection right after answering (what an upstream's keep-alive timeout
// does to an idle pooled connection): a reused, closed connection is retried
// on a new one and does not eject the instance.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "switchboard/edge/upstream.hpp"
#include "switchboard/shared/metrics.hpp"

using namespace sb::edge;
using namespace std::chrono_literals;

namespace {

// Answers the first request of each connection with 200 "ok" (keep-alive
// promised); a second request on the same connection is read and the
// connection closed without an answer — what a request racing the
// upstream's keep-alive timeout sees.
class ClosingServer {
 public:
  ClosingServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~ClosingServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  bool wait_closed(int n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return closed_ >= n; });
  }
  int connections() {
    std::lock_guard lock(mu_);
    return accepted_;
  }

 private:
  void run() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      {
        std::lock_guard lock(mu_);
        ++accepted_;
      }
      for (int served = 0;; ++served) {
        std::string req;
        char buf[4096];
        while (req.find("\r\n\r\n") == std::string::npos) {
          auto n = ::read(c, buf, sizeof buf);
          if (n <= 0) break;
          req.append(buf, static_cast<std::size_t>(n));
        }
        // The whole request, body included (Content-Length).
        const auto cl = req.find("Content-Length: ");
        if (cl != std::string::npos) {
          const auto want = req.find("\r\n\r\n") + 4 + std::stoul(req.substr(cl + 16));
          while (req.size() < want) {
            auto n = ::read(c, buf, sizeof buf);
            if (n <= 0) break;
            req.append(buf, static_cast<std::size_t>(n));
          }
        }
        if (req.empty() || served == 1) break;
        const std::string res =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
            "Connection: keep-alive\r\n\r\nok";
        (void)::write(c, res.data(), res.size());
      }
      ::close(c);
      std::lock_guard lock(mu_);
      ++closed_;
      cv_.notify_all();
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int accepted_ = 0;
  int closed_ = 0;
  std::thread thread_;
};

HttpRequest get() {
  HttpRequest r;
  r.method = "GET";
  r.path = "/ok";
  return r;
}

}  // namespace

TEST(Upstreams, AClosedPooledConnectionIsRetriedOnANewOneWithoutEjection) {
  ClosingServer server;
  UpstreamOptions o;
  o.max_idle = 60s;  // reuse whatever is pooled
  Upstreams up(o);
  const auto url = "http://127.0.0.1:" + std::to_string(server.port());
  auto first = up.call("i1", url, get(), std::chrono::steady_clock::now() + 5s);
  ASSERT_EQ(first.kind, UpstreamResult::Kind::response) << first.error;
  EXPECT_EQ(first.response.status, 200);
  auto& stale = sb::metrics::Registry::global().counter(
      "sb_edge_upstream_stale_connections_total",
      "Pooled upstream connections found closed on use (retried on a new one)");
  const auto stale_before = stale.value();
  // The pooled connection is closed as the request arrives: the call must
  // still succeed (a GET is repeated on a new connection).
  auto second = up.call("i1", url, get(), std::chrono::steady_clock::now() + 5s);
  ASSERT_EQ(second.kind, UpstreamResult::Kind::response) << second.error;
  EXPECT_EQ(second.response.body, "ok");
  EXPECT_TRUE(up.healthy("i1"));
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(stale.value(), stale_before + 1) << "the closed pooled connection was not reused";
  EXPECT_TRUE(server.wait_closed(1, 5s));
}

TEST(Upstreams, APostOnAClosedPooledConnectionIsNotRepeated) {
  ClosingServer server;
  UpstreamOptions o;
  o.max_idle = 60s;
  Upstreams up(o);
  const auto url = "http://127.0.0.1:" + std::to_string(server.port());
  ASSERT_EQ(up.call("i2", url, get(), std::chrono::steady_clock::now() + 5s).kind,
            UpstreamResult::Kind::response);
  auto post = get();
  post.method = "POST";
  post.body = "{}";
  // The upstream may have read it: repeating a POST could apply it twice.
  auto r = up.call("i2", url, post, std::chrono::steady_clock::now() + 5s);
  EXPECT_EQ(r.kind, UpstreamResult::Kind::failed) << r.error;
  EXPECT_EQ(server.connections(), 1);
}

TEST(Upstreams, AnInstanceFailingThreeTimesInARowIsEjected) {
  // A port with nobody listening.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  ::close(fd);
  Upstreams up(UpstreamOptions{});
  const auto url = "http://127.0.0.1:" + std::to_string(port);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(up.healthy("dead")) << "ejected after " << i << " failures";
    auto r = up.call("dead", url, get(), std::chrono::steady_clock::now() + 2s);
    EXPECT_EQ(r.kind, UpstreamResult::Kind::unreachable);
  }
  EXPECT_FALSE(up.healthy("dead"));
  EXPECT_TRUE(up.healthy("other"));
}

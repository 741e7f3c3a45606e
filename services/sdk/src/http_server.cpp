#include "http_server.hpp"

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "switchboard/shared/http_bind.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::sdk::detail {
namespace {

// httplib's ThreadPool queues without bound; this one blocks the accept
// loop while `capacity` connections wait, so the backlog is the kernel's.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(std::size_t threads, std::size_t capacity) : capacity_(capacity) {
    for (std::size_t i = 0; i < std::max<std::size_t>(threads, 1); ++i) {
      threads_.emplace_back([this] { work(); });
    }
  }
  ~BoundedPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lk(mu_);
    space_.wait(lk, [&] { return stopping_ || jobs_.size() < capacity_; });
    if (stopping_) return;  // only while shutting down: the socket is closed by httplib's stop
    jobs_.push_back(std::move(fn));
    work_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard lk(mu_);
      if (stopping_ && threads_.empty()) return;
      stopping_ = true;
    }
    work_.notify_all();
    space_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lk(mu_);
        work_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
        // Drain what was accepted before stopping: each job owns a socket.
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      space_.notify_one();
      fn();
    }
  }

  const std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable work_;
  std::condition_variable space_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  Handler handler;
  httplib::Server server;
  std::thread thread;
  std::atomic<int> port{0};
  std::atomic<bool> serving{false};

  void handle(const httplib::Request& req, httplib::Response& res) {
    HttpRequest r;
    r.method = req.method;
    r.target = req.target.empty() ? req.path : req.target;
    r.headers.reserve(req.headers.size());
    for (const auto& [k, v] : req.headers) {
      // httplib adds these itself; they are not the caller's.
      if (k == "REMOTE_ADDR" || k == "REMOTE_PORT" || k == "LOCAL_ADDR" || k == "LOCAL_PORT") {
        continue;
      }
      r.headers.emplace_back(k, v);
    }
    r.body = req.body;
    Response out;
    try {
      out = handler(r);
    } catch (const std::exception& e) {
      log::error("http handler failed", {{"server", options.name}, {"error", e.what()}});
      out = Response::error(500, "internal_error", e.what());
    }
    res.status = out.status;
    for (const auto& [k, v] : out.headers) res.set_header(k, v);
    res.set_content(out.body, out.content_type);
  }
};

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  auto& s = impl_->server;
  const auto threads = impl_->options.threads;
  const auto queue = impl_->options.queue;
  s.new_task_queue = [threads, queue] { return new BoundedPool(threads, queue); };
  s.set_tcp_nodelay(true);
  s.set_keep_alive_max_count(1000000);
  s.set_keep_alive_timeout(static_cast<time_t>(impl_->options.keep_alive_timeout.count()));
  s.set_read_timeout(static_cast<time_t>(impl_->options.io_timeout.count()), 0);
  s.set_write_timeout(static_cast<time_t>(impl_->options.io_timeout.count()), 0);
  s.set_payload_max_length(impl_->options.max_body_bytes);
  auto h = [this](const httplib::Request& req, httplib::Response& res) { impl_->handle(req, res); };
  s.Get(".*", h);
  s.Post(".*", h);
  s.Put(".*", h);
  s.Patch(".*", h);
  s.Delete(".*", h);
  s.Options(".*", h);
  const auto& host = impl_->options.host;
  const int port = http::bind_server(s, host, impl_->options.port, impl_->options.name);
  impl_->port = port;
  impl_->serving = true;
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  log::info("http listening", {{"server", impl_->options.name}, {"host", host}, {"port", port}});
}

void HttpServer::stop() {
  if (!impl_ || !impl_->serving.exchange(false)) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int HttpServer::port() const noexcept {
  return impl_->port;
}

bool HttpServer::serving() const noexcept {
  return impl_->serving;
}

}  // namespace sb::sdk::detail

#pragma once
// A tuned cpp-httplib server (STACK.md: Nagle off, a bounded worker pool,
// long keep-alive) that hands every request to one function. Used by the
// HTTP upstream transport and by the admin server. httplib stays in the .cpp.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "switchboard/sdk/sdk.hpp"

namespace sb::sdk::detail {

struct HttpRequest {
  std::string method;
  std::string target;  // raw path?query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
  std::size_t threads = 64;
  /// Accepted connections waiting for a worker; the accept loop blocks
  /// (connections wait in the kernel backlog) while it is full.
  std::size_t queue = 256;
  std::chrono::seconds keep_alive_timeout{30};
  std::chrono::seconds io_timeout{30};
  std::size_t max_body_bytes = 16u << 20;
  std::string name = "http";
};

class HttpServer {
 public:
  using Handler = std::function<Response(const HttpRequest&)>;
  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and serves on a thread of its own; throws when it cannot bind.
  void start();
  /// Stops accepting, lets requests in flight finish, joins. Idempotent.
  void stop();
  int port() const noexcept;
  bool serving() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::sdk::detail

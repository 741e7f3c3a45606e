#include "switchboard/edge/upstream.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"

namespace sb::edge {

namespace {

using Clock = std::chrono::steady_clock;

struct Health {
  int failures = 0;
  Clock::time_point ejected_until{};
};

std::pair<time_t, time_t> split(std::chrono::milliseconds d) {
  if (d.count() < 1) d = std::chrono::milliseconds(1);
  return {static_cast<time_t>(d.count() / 1000), static_cast<time_t>((d.count() % 1000) * 1000)};
}

}  // namespace

struct Pooled {
  std::unique_ptr<httplib::Client> client;
  Clock::time_point idle_since;
};

bool idempotent_method(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS";
}

struct Upstreams::Impl {
  UpstreamOptions options;
  mutable std::mutex mu;
  std::map<std::string, std::vector<Pooled>> idle;  // by base url
  std::map<std::string, Health> health;             // by instance
  std::atomic<std::size_t> tracked{0};              // health.size(): the hot path skips the lock
  metrics::Counter& stale = metrics::Registry::global().counter(
      "sb_edge_upstream_stale_connections_total",
      "Pooled upstream connections found closed on use (retried on a new one)");
  metrics::Counter& ejections = metrics::Registry::global().counter(
      "sb_edge_upstream_ejections_total", "HTTP upstream instances ejected after a failure");

  // A pooled connection when one has been idle less than max_idle (an
  // upstream closes idle keep-alive connections on its own schedule, and
  // cpp-httplib cannot tell a closed one before using it); else a new one.
  std::unique_ptr<httplib::Client> take(const std::string& base_url, bool& reused) {
    reused = false;
    {
      std::lock_guard lock(mu);
      auto it = idle.find(base_url);
      const auto now = Clock::now();
      while (it != idle.end() && !it->second.empty()) {
        auto p = std::move(it->second.back());
        it->second.pop_back();
        if (now - p.idle_since < options.max_idle) {
          reused = true;
          return std::move(p.client);
        }
      }
    }
    return fresh(base_url);
  }

  std::unique_ptr<httplib::Client> fresh(const std::string& base_url) {
    auto c = std::make_unique<httplib::Client>(base_url);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    c->set_url_encode(false);
    auto [s, us] = split(options.connect_timeout);
    c->set_connection_timeout(s, us);
    return c;
  }

  void give_back(const std::string& base_url, std::unique_ptr<httplib::Client> c) {
    std::lock_guard lock(mu);
    auto& v = idle[base_url];
    if (v.size() < options.max_idle_per_instance) v.push_back({std::move(c), Clock::now()});
  }

  void failed(const std::string& instance_id) {
    std::lock_guard lock(mu);
    auto& h = health[instance_id];
    tracked = health.size();
    ++h.failures;
    // One failure is noise; a run of them is an instance to avoid.
    if (h.failures < options.eject_after) return;
    auto d = options.eject_base * (1LL << std::min(h.failures - options.eject_after, 10));
    if (d > options.eject_max) d = options.eject_max;
    h.ejected_until = Clock::now() + d;
    ejections.inc();
    log::warn("upstream instance ejected", {{"instance", instance_id},
                                            {"for_ms", static_cast<std::int64_t>(d.count())},
                                            {"failures", h.failures}});
  }

  void succeeded(const std::string& instance_id) {
    if (tracked.load(std::memory_order_relaxed) == 0) return;
    std::lock_guard lock(mu);
    auto it = health.find(instance_id);
    if (it != health.end()) health.erase(it);
    tracked = health.size();
  }
};

Upstreams::Upstreams(UpstreamOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
}
Upstreams::~Upstreams() = default;

bool Upstreams::healthy(const std::string& instance_id) const {
  if (impl_->tracked.load(std::memory_order_relaxed) == 0) return true;
  std::lock_guard lock(impl_->mu);
  auto it = impl_->health.find(instance_id);
  return it == impl_->health.end() || it->second.ejected_until <= Clock::now();
}

void Upstreams::record_failure(const std::string& instance_id) {
  impl_->failed(instance_id);
}

void Upstreams::record_success(const std::string& instance_id) {
  impl_->succeeded(instance_id);
}

void Upstreams::record_stale() {
  impl_->stale.inc();
}

const UpstreamOptions& Upstreams::options() const noexcept {
  return impl_->options;
}

UpstreamResult Upstreams::call(const std::string& instance_id, const std::string& base_url,
                               const HttpRequest& request, Clock::time_point deadline) {
  UpstreamResult out;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) {
    out.kind = UpstreamResult::Kind::failed;
    out.error = "deadline passed before the call";
    return out;
  }
  bool reused = false;
  auto client = impl_->take(base_url, reused);
  auto [s, us] = split(left);
  client->set_read_timeout(s, us);
  client->set_write_timeout(s, us);

  httplib::Request req;
  req.method = request.method;
  req.path = request.query.empty() ? request.path : request.path + "?" + request.query;
  for (const auto& h : request.headers) req.headers.emplace(h.name, h.value);
  req.body = request.body;
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  bool ok = client->send(req, res, error);
  if (!ok && reused && Clock::now() < deadline &&
      (error == httplib::Error::Write || error == httplib::Error::Connection ||
       (error == httplib::Error::Read && idempotent_method(request.method)))) {
    // The pooled connection was closed by the upstream while idle: that is
    // not the instance failing. Once more on a new connection (a request
    // that may have been read is repeated only when idempotent).
    impl_->stale.inc();
    client = impl_->fresh(base_url);
    auto [s2, us2] =
        split(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    client->set_read_timeout(s2, us2);
    client->set_write_timeout(s2, us2);
    res = httplib::Response();
    error = httplib::Error::Success;
    ok = client->send(req, res, error);
  }
  if (!ok) {
    out.kind = error == httplib::Error::Connection ? UpstreamResult::Kind::unreachable
                                                   : UpstreamResult::Kind::failed;
    out.error = httplib::to_string(error);
    impl_->failed(instance_id);
    return out;  // the client (and its connection) is dropped
  }
  out.kind = UpstreamResult::Kind::response;
  out.response.status = res.status;
  out.response.content_type.clear();
  for (const auto& [name, value] : res.headers) {
    auto n = lower(name);
    if (hop_by_hop(n)) continue;
    if (n == "content-type") {
      out.response.content_type = value;
      continue;
    }
    out.response.headers.push_back({std::move(n), value});
  }
  out.response.body = std::move(res.body);
  if (res.status == 502 || res.status == 503 || res.status == 504) {
    impl_->failed(instance_id);
  } else {
    impl_->succeeded(instance_id);
  }
  impl_->give_back(base_url, std::move(client));
  return out;
}

}  // namespace sb::edge

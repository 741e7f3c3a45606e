#include "switchboard/edge/route_source.hpp"

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/broker/topology.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::edge {

RouteSource::RouteSource(RouteSourceOptions options, std::shared_ptr<Router> router,
                         std::shared_ptr<broker::RpcClient> rpc)
    : options_(std::move(options)),
      router_(std::move(router)),
      rpc_(std::move(rpc)),
      catalog_(std::make_shared<CatalogView>()) {}

RouteSource::~RouteSource() {
  stop(Deadline::clock::now());
}

void RouteSource::start() {
  broker::ConsumerOptions co;
  co.connection = options_.broker;
  co.connection.name = options_.broker.name + "-routes";
  co.workers = 1;
  broker::QueueSpec q;
  q.name = "edge.routes." + options_.replica + "." + broker::new_id().substr(0, 8);
  q.durable = false;
  q.exclusive = true;
  q.auto_delete = true;
  q.max_length = 1000;
  q.overflow = broker::Overflow::drop_head;
  co.topology = broker::platform_topology();
  co.topology.queues.push_back(q);
  co.topology.bindings.push_back(
      {q.name, broker::kSignalsExchange, std::string(registry::kRoutesChangedKey)});
  consumer_ = std::make_unique<broker::Consumer>(std::move(co));
  broker::ConsumeOptions opts;
  opts.prefetch = 100;
  opts.retry.enabled = false;
  consumer_->consume(q, opts, [this](const broker::Delivery& d) {
    std::int64_t v = 0;
    try {
      auto doc = json::parse(d.message.body);
      if (doc.IsObject()) v = json::require_int64(doc, "version");
    } catch (const std::exception&) {
      return;  // a malformed signal only wakes nobody
    }
    std::lock_guard lock(mu_);
    if (v > signalled_) signalled_ = v;
    wake_ = true;
    cv_.notify_all();
  });
  thread_ = std::thread([this] { loop(); });
}

void RouteSource::stop(Deadline) noexcept {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  consumer_.reset();
}

app::Health RouteSource::health() const {
  std::lock_guard lock(mu_);
  if (loaded_) return {};
  return {app::HealthState::degraded,
          "route table not loaded yet" + (last_error_.empty() ? "" : ": " + last_error_)};
}

std::shared_ptr<const CatalogView> RouteSource::catalog() const {
  std::lock_guard lock(mu_);
  return catalog_;
}

void RouteSource::loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, options_.poll, [&] { return wake_ || stopping_; });
      if (stopping_) return;
      wake_ = false;
    }
    refresh();
  }
}

void RouteSource::refresh() {
  std::int64_t signalled = 0;
  {
    std::lock_guard lock(mu_);
    signalled = signalled_;
  }
  const auto held = router_->version();
  try {
    broker::Message req;
    req.body = "{\"if_newer_than\":" + std::to_string(held);
    if (signalled > held) req.body += ",\"min_version\":" + std::to_string(signalled);
    req.body += '}';
    auto reply =
        rpc_->call(std::string(registry::kRoutesRpc), std::move(req), options_.rpc_timeout).get();
    auto doc = json::parse(reply.body);
    bool moved = false;
    if (!(doc.IsObject() && doc.HasMember("unchanged"))) {
      auto table = registry::route_table_from_json(reply.body);
      moved = router_->update(table);
      if (moved) {
        log::info("route table updated",
                  {{"version", table.version},
                   {"services", static_cast<std::int64_t>(table.services.size())}});
      }
    }
    bool need_catalog = moved;
    {
      std::lock_guard lock(mu_);
      need_catalog = need_catalog || catalog_->version() == 0;
    }
    if (need_catalog) {
      broker::Message creq;
      creq.body = "{}";
      auto creply =
          rpc_->call(std::string(registry::kCatalogRpc), std::move(creq), options_.rpc_timeout)
              .get();
      auto view = CatalogView::from_json(creply.body);
      std::lock_guard lock(mu_);
      catalog_ = std::move(view);
    }
    std::lock_guard lock(mu_);
    loaded_ = true;
    last_error_.clear();
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    if (last_error_ != e.what()) {
      log::warn("cannot load the route table", {{"error", e.what()}});
    }
    last_error_ = e.what();
  }
}

}  // namespace sb::edge

#pragma once
// Keeps the edge's route table and catalog in step with the registry
// (docs/protocol.md 8.7, 8.9): woken by `registry.routes.changed` on
// sb.signals (an exclusive queue per edge), it asks `registry.routes` with
// `if_newer_than` the version it holds; it also asks every `poll` interval
// and after a broker reconnect, so a lost signal costs at most one interval.
// The catalog is re-read whenever the route table moves (a registration is
// what brings new types).

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "switchboard/broker/options.hpp"
#include "switchboard/edge/gateway.hpp"
#include "switchboard/edge/router.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::broker {
class RpcClient;
class Consumer;
}  // namespace sb::broker

namespace sb::edge {

struct RouteSourceOptions {
  broker::ConnectionOptions broker;  // for the signal consumer
  std::string replica = "edge";
  std::chrono::milliseconds poll{2000};
  std::chrono::milliseconds rpc_timeout{2000};
};

class RouteSource : public app::Component {
 public:
  RouteSource(RouteSourceOptions options, std::shared_ptr<Router> router,
              std::shared_ptr<broker::RpcClient> rpc);
  ~RouteSource() override;
  std::string_view name() const override { return "route-source"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  std::shared_ptr<const CatalogView> catalog() const;

 private:
  void loop();
  void refresh();

  RouteSourceOptions options_;
  std::shared_ptr<Router> router_;
  std::shared_ptr<broker::RpcClient> rpc_;
  std::unique_ptr<broker::Consumer> consumer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::int64_t signalled_ = 0;
  bool wake_ = true;
  bool stopping_ = false;
  bool loaded_ = false;
  std::string last_error_;
  std::shared_ptr<const CatalogView> catalog_;
  std::thread thread_;
};

}  // namespace sb::edge

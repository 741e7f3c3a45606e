#pragma once
// Request/reply routing from the registry's route table (docs/protocol.md
// 8.7, 9): path templates, the version a call goes to (canary weights or an
// explicit X-Service-Version) and the instance within it.
//
// The table is replaced whole when the registry announces a new version
// (readers keep the one they started with: no lock on the request path but
// one atomic shared_ptr load).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "switchboard/registry/route_table.hpp"
#include "switchboard/shared/text.hpp"

namespace sb::edge {

using Params = text::Params;
using PathTemplate = text::PathTemplate;

/// Where one call goes.
struct Target {
  std::string service;
  std::string version;
  registry::Endpoint endpoint;  // routed requests only
  Params params;
  /// amqp: the queue of the version (routing key `<service>.<version>`);
  /// http: this instance.
  registry::Transport transport;
  std::string instance_id;  // http only
  /// `<service>.<version>`.
  std::string rpc_key() const { return service + "." + version; }
};

enum class RouteError {
  unknown_service,     // 404: never registered
  unknown_route,       // 404: no endpoint matches the path
  method_not_allowed,  // 405: the path matches, the method does not
  unknown_version,     // 404: X-Service-Version names no live version
  no_live_instance,    // 503: known, but nothing live (or all ejected) to route to
};
const char* to_string(RouteError error);

struct RouteResult {
  std::optional<Target> target;
  RouteError error = RouteError::unknown_route;
  /// Allowed methods when method_not_allowed.
  std::vector<std::string> allowed;
};

class Router {
 public:
  /// Whether an HTTP instance may be picked now (not ejected).
  using Health = std::function<bool(const std::string& instance_id)>;

  Router();
  ~Router();

  /// Replaces the table (ignored when not newer than the current one).
  /// Throws std::invalid_argument for a malformed path template (the table
  /// is then not taken).
  bool update(const registry::RouteTable& table);
  std::int64_t version() const;
  std::shared_ptr<const registry::RouteTable> table() const;
  bool knows(std::string_view service) const;

  /// A routed request: the endpoint for (method, path) in a live version,
  /// chosen by `version` (X-Service-Version) or by weight with `draw` in
  /// [0, 1).
  RouteResult route(std::string_view service, std::string_view method, std::string_view path,
                    std::optional<std::string_view> version, double draw,
                    const Health& healthy) const;
  /// A command: any live version of the service, chosen the same way.
  RouteResult pick(std::string_view service, std::optional<std::string_view> version, double draw,
                   const Health& healthy) const;

  struct Compiled;

 private:
  std::shared_ptr<const Compiled> compiled() const;
  mutable std::mutex mu_;
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace sb::edge

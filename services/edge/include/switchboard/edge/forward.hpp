#pragma once
// The shapes of docs/protocol.md section 9: an HTTP request or a command
// turned into an AMQP RPC request or an HTTP upstream request, and a reply
// turned back into the HTTP response. Pure functions (unit-tested).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "switchboard/broker/message.hpp"
#include "switchboard/edge/http.hpp"
#include "switchboard/edge/router.hpp"

namespace sb::edge {

/// What the edge knows about a call besides the request itself.
struct CallContext {
  std::string request_id;
  std::string correlation_id;
  std::string traceparent;
  std::string tenant;
  std::string actor;  // user:<sub> | key:<id> | anonymous
  std::vector<std::string> roles;
  /// The caller's address as the edge's socket saw it (x-sb-client-address):
  /// what a service may trust for per-address limits, unlike X-Forwarded-For.
  std::string client_address;
  std::optional<std::int64_t> min_position;
  /// The deadline the service gets (x-sb-deadline / X-SB-Deadline).
  std::chrono::system_clock::time_point service_deadline;
};

/// 9.1: a routed request. `path` is the path after /api/<service>.
broker::Message rpc_request(const HttpRequest& request, const std::string& path,
                            const Target& target, const CallContext& context);
/// 9.1/9.2: a command.
broker::Message rpc_command(const std::string& command, const std::string& command_id,
                            const std::string& body, const CallContext& context);
/// 9.1: the reply; 502 upstream_error when it is an error reply or malformed.
HttpResponse response_from_reply(const broker::Message& reply);

/// 9.4: the request an HTTP instance gets for a routed request.
HttpRequest upstream_request(const HttpRequest& request, const std::string& path,
                             const Target& target, const CallContext& context);
/// 9.4: the request an HTTP instance gets for a command.
HttpRequest upstream_command(const HttpRequest& request, const std::string& command,
                             const std::string& command_id, const CallContext& context);

/// The service's answer to a command, as the edge gives it to the caller:
/// 2xx bodies must be JSON objects and get "command_id" added; error bodies
/// pass through when they have the platform's error shape, else 502.
HttpResponse command_response(const HttpResponse& from_service, const std::string& command_id);

}  // namespace sb::edge

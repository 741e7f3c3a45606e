#pragma once
// The wire mapping of docs/protocol.md section 9, transport by transport:
// AMQP request messages (9.1) and HTTP upstream requests (9.4) into one
// Request; a Response into an RPC reply or an HTTP answer; store.append
// replies into AppendOutcome (9.2). Pure functions, unit-tested.

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "switchboard/broker/message.hpp"
#include "switchboard/sdk/sdk.hpp"

namespace sb::sdk {

// Header names of section 9.1 (AMQP headers; HTTP uses them case-insensitively).
inline constexpr std::string_view kKindHeader = "x-sb-kind";
inline constexpr std::string_view kDeadlineHeader = "x-sb-deadline";
inline constexpr std::string_view kRequestIdHeader = "x-sb-request-id";
inline constexpr std::string_view kCorrelationHeader = "x-correlation-id";
inline constexpr std::string_view kTraceparentHeader = "traceparent";
inline constexpr std::string_view kTenantHeader = "x-sb-tenant";
inline constexpr std::string_view kActorHeader = "x-sb-actor";
inline constexpr std::string_view kClientAddressHeader = "x-sb-client-address";
inline constexpr std::string_view kRolesHeader = "x-sb-roles";
inline constexpr std::string_view kMinPositionHeader = "x-sb-min-position";
inline constexpr std::string_view kHttpMinPositionHeader = "x-min-position";
inline constexpr std::string_view kMethodHeader = "x-sb-method";
inline constexpr std::string_view kPathHeader = "x-sb-path";
inline constexpr std::string_view kRouteHeader = "x-sb-route";
inline constexpr std::string_view kParamsHeader = "x-sb-params";
inline constexpr std::string_view kQueryHeader = "x-sb-query";
inline constexpr std::string_view kHttpHeadersHeader = "x-sb-http-headers";
inline constexpr std::string_view kCommandHeader = "x-sb-command";
inline constexpr std::string_view kCommandIdHeader = "x-sb-command-id";
inline constexpr std::string_view kStatusHeader = "x-sb-status";
/// HTTP upstream: commands arrive as POST <base_url>/_sb/commands/<command>.
inline constexpr std::string_view kHttpCommandPrefix = "/_sb/commands/";

/// "<name>.<version>": the routing key (and `rpc.<key>` the queue) of 9.1.
std::string rpc_service_key(std::string_view name, std::string_view version);

/// The platform's error body {"error":{"code","message","details"}};
/// `details_json` must be a JSON object (anything else becomes {}).
std::string error_body(std::string_view code, std::string_view message,
                       std::string_view details_json = "{}");

/// "a, b,c" -> {"a","b","c"} (blanks dropped).
std::vector<std::string> split_roles(std::string_view text);

/// Epoch milliseconds <-> time points.
SystemTime from_epoch_ms(std::int64_t ms);
std::int64_t to_epoch_ms(SystemTime t);

/// A 9.1 request message -> Request. A missing deadline becomes now +
/// `default_deadline`; malformed JSON headers are ignored (empty maps).
Request request_from_amqp(const broker::Message& message,
                          std::chrono::milliseconds default_deadline);
/// Response -> 9.1 reply (x-sb-status, content_type, x-sb-http-headers).
broker::Message amqp_reply(const Response& response);

/// A 9.4 HTTP request -> Request. `target` is the raw request target
/// (path?query, percent-encoding kept); header names in any case. A POST to
/// /_sb/commands/<command> is a command (X-SB-Command, when present, names
/// it).
Request request_from_http(std::string_view method, std::string_view target,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          std::string body, std::chrono::milliseconds default_deadline);

/// Maps a store.append reply (docs/protocol.md 7.1) to the outcome of 9.2.
AppendOutcome outcome_from_store_reply(std::string_view body, std::string stream,
                                       std::vector<std::string> event_ids);
/// The HTTP status for a store error code: wrong_expected_version,
/// partial_duplicate, event_id_reused 409; deadline_exceeded 504;
/// unavailable 503; stream_not_found 404; too_large 413; the rest (the
/// service proposed events the store refuses) 500.
int status_for_store_error(std::string_view code);

/// An outcome for a failure that never reached the store's decision.
AppendOutcome failed_outcome(int status, std::string code, std::string message,
                             std::string details_json = "{}");

}  // namespace sb::sdk

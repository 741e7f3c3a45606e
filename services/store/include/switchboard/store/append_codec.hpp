#pragma once
// The store's wire format for appends (RPC `store.append` and the
// `store.ingest` queue), decoded and validated before anything reaches the
// writer. Request:
//   {"stream": "order-42", "expected_version": "any"|"no_stream"|"stream_exists"|N,
//    "tenant": "acme", "events": [NewEvent, ...]}
// Reply (always JSON; domain outcomes are replies, not transport errors):
//   {"result": "appended"|"duplicate", "positions": [..], "last_version": N}
//   {"error": {"code", "message", "details"}}
// Error codes: malformed_json, invalid_request, too_large, unknown_event_type,
// transient_event_type, schema_violation, wrong_expected_version,
// stream_not_found, partial_duplicate, event_id_reused, duplicate_event_id,
// unavailable, store_error.

#include <string>
#include <string_view>
#include <variant>

#include "switchboard/events/catalog.hpp"
#include "switchboard/store/writer.hpp"

namespace sb::store {

struct DecodeError {
  std::string code;
  std::string message;
  std::string path;  // JSON Pointer of the offending value, "" = the body
};

/// Parses and validates an append against the catalog: every event's type
/// must be known and stored (not transient), its data valid for its schema
/// version, sizes within limits. `default_tenant` applies when the body has
/// no tenant (ingest takes it from the broker-validated publisher).
std::variant<AppendRequest, DecodeError> decode_append(std::string_view body,
                                                       const events::Catalog& catalog,
                                                       std::string_view default_tenant = "");

/// Records who published an append: `user` is the AMQP user_id of the
/// request or ingest message, validated by RabbitMQ. Each event's
/// `meta.publisher` becomes `user` (replacing whatever the caller put
/// there); for an ingested append (`ingest`) from a `plugin-<name>` user,
/// each event's actor becomes `service:<name>`. An empty user (a publisher
/// that set no user_id) records nothing, and a `meta.publisher` the caller
/// sent is removed: the member only ever holds a broker-validated user.
/// Cheap: an event whose meta has no `publisher` yet is edited as text.
void stamp_publisher(AppendRequest& request, std::string_view user, bool ingest);

std::string encode_result(const AppendResult& result);
std::string encode_error(const DecodeError& error);

}  // namespace sb::store

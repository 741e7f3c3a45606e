#pragma once
// Operator endpoints over the event flow (issue 7), for super_admin and
// tenant_admin callers only (403 for anyone else):
//
//   GET    /api/v1/subscriptions                      checkpointed subscriptions
//                                                     (subscription_checkpoints)
//                                                     with lag and rate, plus the
//                                                     push groups the database knows
//   GET    /api/v1/projections                        projection_generations with
//                                                     their checkpoints
//   GET    /api/v1/subscriptions/{group}/parked       parked messages of a push
//                                                     group (?limit=)
//   POST   /api/v1/subscriptions/{group}/parked/retry put them back (?message_id=)
//   DELETE /api/v1/subscriptions/{group}/parked       drop them (?message_id=)
//   POST   /api/v1/replays                            targeted replay to ONE push
//                                                     group, in the background
//   GET    /api/v1/replays/{id}                       its progress and ETA
//
// Tenant scope: a tenant_admin (or a super admin acting for a tenant with
// X-Tenant) replays only its tenant's events, sees only its tenant's parked
// messages and replays, and may retry/drop parked messages only one at a
// time by message_id (after the edge checked the message is its tenant's).
// Subscription and projection states are platform metadata; a last_error is
// shown to a scoped caller only when the failing event is its tenant's.
//
// Resetting a checkpointed subscription ({"subscription": ...} bodies) is not
// done from the edge: 501 not_implemented (it needs a control signal to the
// owning process that the subscription library does not have yet).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/broker/options.hpp"
#include "switchboard/edge/events_api.hpp"
#include "switchboard/edge/http.hpp"
#include "switchboard/shared/auth.hpp"

namespace sb::pg {
class Pool;
}

namespace sb::edge {

struct AdminApiOptions {
  /// Replays running at once; a replay beyond this is refused with 503.
  std::size_t max_replays = 2;
  /// Events read per page while replaying.
  std::size_t replay_page = 500;
  /// Positions per replay step: progress is updated (and the publishes of the
  /// step confirmed) after each.
  std::int64_t replay_step = 5000;
  /// Deadline for the publishes of one step to be confirmed.
  std::chrono::milliseconds replay_step_timeout{60000};
  /// Finished replays remembered for GET /api/v1/replays/{id}.
  std::size_t kept_replays = 256;
  std::size_t parked_default_limit = 50;
  std::size_t parked_max_limit = 500;
  /// Parked messages examined for a tenant-scoped caller (its own are
  /// picked out of these).
  std::size_t parked_scan = 1000;
  /// Rate samples closer together than this are not replaced (the rate is
  /// computed between the two samples kept per subscription).
  std::chrono::milliseconds rate_min_interval{1000};
};

/// The caller of an operator endpoint.
struct Operator {
  bool super_admin = false;
  /// The tenant the caller is limited to; nullopt: every tenant.
  std::optional<std::string> tenant;
  std::string actor;
};

/// Throws HttpError 403 `forbidden` unless super_admin or tenant_admin.
void require_operator(const auth::Principal& principal);

/// Whether `rest` (the path after "/api/v1/") is one of the operator
/// endpoints above.
bool is_admin_path(std::string_view rest);

/// A push group name from its raw (percent-encoded) path segment. Throws
/// HttpError 400 `invalid_group` unless it is a valid subscription name.
std::string parse_group(std::string_view raw);

struct ParkedQuery {
  std::size_t limit = 50;
  std::optional<std::string> message_id;
};
/// ?limit= (1..max, clamped to parked_max_limit) and ?message_id=. Throws 400.
ParkedQuery parse_parked_query(std::string_view query, const AdminApiOptions& options);

/// A validated POST /api/v1/replays body.
struct ReplaySpec {
  std::string group;
  std::int64_t from_position = 1;           // inclusive
  std::optional<std::int64_t> to_position;  // inclusive; nullopt: the head at start
  std::vector<std::string> types;           // empty: every type
  /// Forced to the caller's tenant when it is scoped.
  std::optional<std::string> tenant;
};
/// Throws HttpError 400 (malformed JSON, unknown or wrongly typed field,
/// invalid group/type/tenant, bad range), 403 (a tenant other than the
/// caller's).
ReplaySpec parse_replay_body(std::string_view body, const Operator& caller);

/// `{"subscription": name, "position": N}`: set a checkpointed
/// subscription's checkpoint (every partition) to N; its owner picks the
/// change up within its poll interval and re-reads from there. nullopt when
/// the body is not a reset. Throws HttpError 400 (bad name/position, unknown
/// field) and 403 (only a super admin: a subscription spans tenants).
struct ResetSpec {
  std::string subscription;
  std::int64_t position = 0;
};
std::optional<ResetSpec> parse_reset_body(std::string_view body, const Operator& caller);

/// A replay id from its path segment (32 hex digits). Throws 404 otherwise.
std::string parse_replay_id(std::string_view raw);

class AdminApi {
 public:
  /// `pool`: the store's database (events, subscription_checkpoints,
  /// projection_generations); `broker`: for ParkedQueue and the replay
  /// publishers.
  AdminApi(std::shared_ptr<pg::Pool> pool, broker::ConnectionOptions broker,
           AdminApiOptions options = {});
  /// Cancels running replays between steps and waits for them.
  ~AdminApi();
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  /// Dispatches an operator request (`rest` as in is_admin_path). The caller
  /// has passed require_operator().
  HttpResponse handle(const HttpRequest& request, std::string_view rest, const Operator& caller);

  HttpResponse subscriptions(const Operator& caller);
  HttpResponse projections(const Operator& caller);
  HttpResponse parked_list(const HttpRequest& request, const Operator& caller,
                           const std::string& group);
  HttpResponse parked_retry(const HttpRequest& request, const Operator& caller,
                            const std::string& group);
  HttpResponse parked_drop(const HttpRequest& request, const Operator& caller,
                           const std::string& group);
  HttpResponse start_replay(const HttpRequest& request, const Operator& caller);
  HttpResponse replay_status(const Operator& caller, const std::string& id);

  /// Stops taking replays and waits for the running ones (cancelled between steps).
  void drain();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::edge

#pragma once
// What the edge knows about identity (docs/protocol.md 11.5): a fold of the
// identity.* events of 11.1 into memory, so checking a credential costs no
// network call. apply() is the pure fold (no I/O; unit-tested with synthetic
// events); IdentityFeed (identity_feed.hpp) feeds it from the events table
// in position order.
//
// Kept: each tenant's service policy and whether it is suspended, each
// user's security_version and deactivation, custom roles per tenant, API
// keys by prefix (revoked ones stay, marked), and revoked sessions until
// their access tokens have expired (access_expires_at + leeway; prune()).
//
// Thread-safety: any number of readers (the HTTP workers, on every request)
// and one writer. Readers take a shared lock for one lookup and copy out
// what they need; the writer holds the exclusive lock only while applying
// one event.

#include <atomic>
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "switchboard/events/envelope.hpp"
#include "switchboard/shared/rwlock.hpp"

namespace sb::edge {

/// A tenant's service policy (identity.tenant.created / services_changed).
struct TenantPolicy {
  std::vector<std::string> services;  // ["*"]: every service
  std::vector<std::string> disabled;
  bool suspended = false;
  /// Whether `service` is enabled: `identity` always; otherwise listed (or
  /// "*") and not disabled.
  bool enables(std::string_view service) const;
};

struct UserState {
  std::int64_t security_version = 0;
  bool deactivated = false;
};

struct ApiKeyRecord {
  std::string key_id;
  std::string prefix;
  std::string key_hash;  // SHA-256 hex of the whole key
  std::string tenant;
  std::string owner;
  std::vector<std::string> roles;
  std::vector<std::string> scopes;
  std::int64_t expires_at = 0;  // epoch s; 0: never
  bool revoked = false;
};

/// Why a verified token is refused anyway (empty: it is not).
enum class TokenDenial { none, session_revoked, stale_user_version, user_deactivated };
std::string_view to_string(TokenDenial denial);

/// The event types the view folds (patterns for events::Filter::types).
const std::vector<std::string>& identity_event_patterns();

class IdentityView {
 public:
  /// A revoked session is kept until its access_expires_at plus `leeway`
  /// (the token verifier's clock leeway, and some).
  explicit IdentityView(std::int64_t session_leeway_s = 120);

  IdentityView(const IdentityView&) = delete;
  IdentityView& operator=(const IdentityView&) = delete;

  /// Folds one event. Events at or below position() are ignored (so the
  /// feed may overlap), as are types the view does not keep. Returns
  /// whether the event changed anything. Throws sb::json::Error for an
  /// identity event whose data lacks what the view needs (the position
  /// still advances: the caller logs and goes on).
  bool apply(const events::Event& event);

  /// Drops session revocations whose access tokens have all expired.
  /// Returns how many were dropped.
  std::size_t prune(std::int64_t now_epoch_s);

  // --------------------------------------------------------------- queries

  /// The deny checks on a verified user token (11.5): its session revoked,
  /// its `uv` below the user's security_version, the user deactivated.
  /// Users the view does not know (development tokens) pass.
  TokenDenial check_token(std::string_view user_id, std::string_view session_id,
                          std::int64_t user_version) const;
  std::optional<ApiKeyRecord> api_key(std::string_view prefix) const;
  /// nullopt: a tenant the identity service never created (no policy).
  std::optional<TenantPolicy> tenant(std::string_view tenant) const;
  bool tenant_suspended(std::string_view tenant) const;
  /// Whether `service` is enabled for `tenant` (true without a policy).
  bool service_enabled(std::string_view tenant, std::string_view service) const;
  /// The permission patterns of a custom role (empty when not defined).
  std::vector<std::string> role_permissions(std::string_view tenant, std::string_view role) const;
  /// Whether any pattern of the custom role matches `key` (no copy).
  bool role_grants(std::string_view tenant, std::string_view role, std::string_view key) const;
  std::optional<UserState> user(std::string_view user_id) const;
  bool session_revoked(std::string_view session_id) const;

  /// The last position applied (0: none).
  std::int64_t position() const;
  std::size_t revoked_sessions() const;
  std::size_t api_keys() const;

  /// Whether the initial load from the store is done (set by the feed; an
  /// edge without a database marks its empty view loaded at once).
  bool loaded() const noexcept { return loaded_.load(std::memory_order_acquire); }
  void mark_loaded() noexcept { loaded_.store(true, std::memory_order_release); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  template <typename V>
  using Map = std::unordered_map<std::string, V, Hash, std::equal_to<>>;

  void apply_tenant(const events::Event& e, std::string_view what);
  void apply_user(const events::Event& e, std::string_view what);
  void apply_role(const events::Event& e, std::string_view what);
  void apply_apikey(const events::Event& e, std::string_view what);
  void apply_session(const events::Event& e, std::string_view what);

  std::int64_t session_leeway_s_;
  // Writer-preferring: a revocation is applied even while every HTTP worker reads.
  mutable WriterPreferringMutex mu_;
  Map<TenantPolicy> tenants_;
  Map<UserState> users_;
  Map<std::int64_t> revoked_sessions_;   // session id -> keep until (epoch s)
  Map<std::vector<std::string>> roles_;  // "<tenant>/<role>" -> patterns
  Map<ApiKeyRecord> keys_;               // prefix -> key
  Map<std::string> key_prefix_by_id_;    // key id -> prefix
  std::int64_t position_ = 0;
  std::atomic<bool> loaded_{false};
};

}  // namespace sb::edge

#pragma once
// RFC 9562 UUIDs: random (v4), time-ordered (v7) and name-based (v5).
// Event ids are v7 so new rows land at the end of the store's indexes; ids
// of events emitted by a command are v5, derived from the command's id, so a
// retried command produces the very same events and the store's idempotency
// check (by event id) drops the duplicates.

#include <array>
#include <chrono>
#include <compare>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "switchboard/events/time.hpp"
#include "switchboard/events/types.hpp"

namespace sb::events {

class Uuid {
 public:
  using Bytes = std::array<std::uint8_t, 16>;

  /// The nil UUID.
  constexpr Uuid() = default;
  explicit constexpr Uuid(const Bytes& bytes) : bytes_(bytes) {}

  /// Canonical 8-4-4-4-12 hex text (either case); throws InvalidValue.
  static Uuid parse(std::string_view text);
  static std::optional<Uuid> try_parse(std::string_view text) noexcept;

  /// Canonical lower-case text.
  std::string to_string() const;
  const Bytes& bytes() const noexcept { return bytes_; }
  int version() const noexcept { return bytes_[6] >> 4; }
  /// True for the RFC 9562 variant (10xx), the only one generated here.
  bool is_rfc_variant() const noexcept { return (bytes_[8] & 0xC0) == 0x80; }
  bool is_nil() const noexcept { return *this == Uuid(); }

  friend constexpr bool operator==(const Uuid&, const Uuid&) = default;
  friend constexpr auto operator<=>(const Uuid&, const Uuid&) = default;
  friend std::ostream& operator<<(std::ostream& os, const Uuid& u) { return os << u.to_string(); }

 private:
  Bytes bytes_{};
};

// RFC 9562 appendix C namespaces.
inline constexpr Uuid kNamespaceDns{Uuid::Bytes{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                                0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}};
inline constexpr Uuid kNamespaceUrl{Uuid::Bytes{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1,
                                                0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}};
/// Namespace of derived event ids. Never change it: it would change the ids
/// of retried commands and let them apply twice.
inline constexpr Uuid kEventIdNamespace{Uuid::Bytes{0x3c, 0x5e, 0x0a, 0x8e, 0x51, 0x2b, 0x4d, 0x6f,
                                                    0x9a, 0x17, 0x6e, 0x2d, 0xc4, 0x41, 0x8b,
                                                    0x90}};

/// Random (libsodium's CSPRNG).
Uuid uuid_v4();
/// Time-ordered: strictly increasing within this process, also for many ids
/// in the same millisecond (RFC 9562 method 3: 12-bit counter in rand_a).
Uuid uuid_v7();
/// A v7 UUID for the given time with random low bits; no ordering guarantee
/// among ids of the same millisecond.
Uuid uuid_v7_at(Timestamp at);
/// The timestamp of a v7 UUID; nullopt for other versions.
std::optional<Timestamp> uuid_v7_time(const Uuid& id);
/// Name-based with SHA-1.
Uuid uuid_v5(const Uuid& name_space, std::string_view name);

EventId to_event_id(const Uuid& id);

/// A fresh (v7) event id.
EventId new_event_id();

/// The id of the `index`-th event emitted by `command`, deterministic so a
/// retried command yields identical ids. The tenant is part of the name
/// because the command id may be a client's Idempotency-Key, which is only
/// unique within its tenant: without it two tenants sending the same key
/// would derive the same ids and one tenant's events would be dropped as
/// duplicates of the other's.
EventId derive_event_id(const TenantId& tenant, const CommandId& command, std::uint32_t index);

}  // namespace sb::events

template <>
struct std::hash<sb::events::Uuid> {
  std::size_t operator()(const sb::events::Uuid& u) const noexcept;
};

#pragma once
// Strong types for the identifiers of the event model, so a stream id can
// never be passed where a tenant or an event type is expected. Validated
// types check their value on construction and throw InvalidValue.

#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace sb::events {

/// Root of the errors this library throws (JSON input errors are
/// sb::json::Error, shared with the rest of the platform).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A value that does not satisfy its type's rules (bad event type, stream
/// id, UUID, timestamp...).
class InvalidValue : public Error {
 public:
  using Error::Error;
};

namespace detail {

/// A string with a meaning. `Tag` provides `kName` and
/// `static std::optional<std::string> check(std::string& value)`, which
/// returns why the value is invalid (and may canonicalise it in place).
template <class Tag>
class StringValue {
 public:
  explicit StringValue(std::string value) : value_(std::move(value)) {
    if (auto why = Tag::check(value_)) {
      throw InvalidValue(std::string("invalid ") + Tag::kName + ": " + *why);
    }
  }
  explicit StringValue(std::string_view value) : StringValue(std::string(value)) {}
  explicit StringValue(const char* value) : StringValue(std::string(value)) {}

  /// The value if valid, otherwise nullopt; for input that may be wrong.
  static std::optional<StringValue> try_make(std::string_view value) {
    std::string copy(value);
    if (Tag::check(copy)) return std::nullopt;
    return StringValue(std::move(copy), Trusted{});
  }
  static bool is_valid(std::string_view value) {
    std::string copy(value);
    return !Tag::check(copy).has_value();
  }

  const std::string& value() const noexcept { return value_; }

  friend bool operator==(const StringValue&, const StringValue&) = default;
  friend auto operator<=>(const StringValue&, const StringValue&) = default;
  friend std::ostream& operator<<(std::ostream& os, const StringValue& v) { return os << v.value_; }

 private:
  struct Trusted {};
  StringValue(std::string value, Trusted) : value_(std::move(value)) {}
  std::string value_;
};

/// A non-negative 64-bit counter with a meaning.
template <class Tag>
class IntValue {
 public:
  constexpr IntValue() = default;
  explicit constexpr IntValue(std::int64_t value) : value_(value) {
    if (value < 0) throw InvalidValue(std::string("invalid ") + Tag::kName + ": negative");
  }
  constexpr std::int64_t value() const noexcept { return value_; }
  constexpr IntValue next() const { return IntValue(value_ + 1); }

  friend constexpr bool operator==(IntValue, IntValue) = default;
  friend constexpr auto operator<=>(IntValue, IntValue) = default;
  friend std::ostream& operator<<(std::ostream& os, IntValue v) { return os << v.value_; }

 private:
  std::int64_t value_ = 0;
};

// Tags. `check` implementations live in types.cpp.
struct StreamIdTag {
  static constexpr const char* kName = "stream id";
  static std::optional<std::string> check(std::string& v);
};
struct EventTypeTag {
  static constexpr const char* kName = "event type";
  static std::optional<std::string> check(std::string& v);
};
struct CommandNameTag {
  static constexpr const char* kName = "command name";
  static std::optional<std::string> check(std::string& v);
};
struct TenantIdTag {
  static constexpr const char* kName = "tenant id";
  static std::optional<std::string> check(std::string& v);
};
struct EventIdTag {
  static constexpr const char* kName = "event id";
  static std::optional<std::string> check(std::string& v);
};
struct CommandIdTag {
  static constexpr const char* kName = "command id";
  static std::optional<std::string> check(std::string& v);
};
struct CorrelationIdTag {
  static constexpr const char* kName = "correlation id";
  static std::optional<std::string> check(std::string& v);
};
struct CausationIdTag {
  static constexpr const char* kName = "causation id";
  static std::optional<std::string> check(std::string& v);
};
struct ActorIdTag {
  static constexpr const char* kName = "actor id";
  static std::optional<std::string> check(std::string& v);
};
struct PositionTag {
  static constexpr const char* kName = "position";
};
struct StreamVersionTag {
  static constexpr const char* kName = "stream version";
};

}  // namespace detail

/// Printable ASCII without spaces, 1..kMaxStreamIdBytes bytes (e.g. "user-4f1c").
using StreamId = detail::StringValue<detail::StreamIdTag>;
/// Dot-separated segments of [a-z0-9_-], at most kMaxEventTypeBytes; it is
/// also the AMQP routing key. Stored events are `<context>.<entity>.<verb>`
/// (three or more segments, enforced by the catalog for stored types); two
/// segments are allowed for transient signals such as `service.heartbeat`,
/// which DESIGN.md names that way.
using EventType = detail::StringValue<detail::EventTypeTag>;
/// `<service>.<command>`: exactly two segments of [a-z0-9_-].
using CommandName = detail::StringValue<detail::CommandNameTag>;
/// [a-z0-9_-]{1,63}. Names starting with '_' are reserved for the platform.
using TenantId = detail::StringValue<detail::TenantIdTag>;
/// A UUID in canonical text; upper-case input is stored lower-case.
using EventId = detail::StringValue<detail::EventIdTag>;
/// The command's id: the client's Idempotency-Key or a generated one.
/// Printable ASCII, 1..kMaxIdBytes bytes.
using CommandId = detail::StringValue<detail::CommandIdTag>;
using CorrelationId = detail::StringValue<detail::CorrelationIdTag>;
/// What caused an event: the id of a command or of another event.
using CausationId = detail::StringValue<detail::CausationIdTag>;
/// Who caused it, e.g. "user:4f1c…" or "service:registry".
using ActorId = detail::StringValue<detail::ActorIdTag>;

/// Global, gap-free position of an event in commit order.
using Position = detail::IntValue<detail::PositionTag>;
/// The event's index in its stream: the first event of a stream is version 0.
using StreamVersion = detail::IntValue<detail::StreamVersionTag>;

/// The tenant of platform-wide events (service registrations, catalog changes).
TenantId system_tenant();
bool is_reserved_tenant(const TenantId& tenant);

CausationId caused_by(const EventId& id);
CausationId caused_by(const CommandId& id);

/// The optimistic-concurrency condition of an append.
class ExpectedVersion {
 public:
  enum class Kind { any, no_stream, stream_exists, exact };

  static constexpr ExpectedVersion any() { return ExpectedVersion(Kind::any, 0); }
  static constexpr ExpectedVersion no_stream() { return ExpectedVersion(Kind::no_stream, 0); }
  static constexpr ExpectedVersion stream_exists() {
    return ExpectedVersion(Kind::stream_exists, 0);
  }
  /// The stream's last event has version `version`.
  static constexpr ExpectedVersion exact(StreamVersion version) {
    return ExpectedVersion(Kind::exact, version.value());
  }

  constexpr Kind kind() const noexcept { return kind_; }
  /// Set only for Kind::exact.
  std::optional<StreamVersion> version() const {
    if (kind_ != Kind::exact) return std::nullopt;
    return StreamVersion(version_);
  }

  /// Whether a stream whose last version is `current` (nullopt: the stream
  /// does not exist) satisfies this expectation.
  constexpr bool matches(std::optional<StreamVersion> current) const noexcept {
    switch (kind_) {
      case Kind::any:
        return true;
      case Kind::no_stream:
        return !current.has_value();
      case Kind::stream_exists:
        return current.has_value();
      case Kind::exact:
        return current.has_value() && current->value() == version_;
    }
    return false;
  }

  /// "any", "no_stream", "stream_exists" or the version number.
  std::string to_string() const;
  /// The inverse of to_string(); throws InvalidValue.
  static ExpectedVersion parse(std::string_view text);

  friend constexpr bool operator==(ExpectedVersion, ExpectedVersion) = default;
  friend std::ostream& operator<<(std::ostream& os, ExpectedVersion v) {
    return os << v.to_string();
  }

 private:
  constexpr ExpectedVersion(Kind kind, std::int64_t version) : kind_(kind), version_(version) {}
  Kind kind_;
  std::int64_t version_;
};

}  // namespace sb::events

template <class Tag>
struct std::hash<sb::events::detail::StringValue<Tag>> {
  std::size_t operator()(const sb::events::detail::StringValue<Tag>& v) const noexcept {
    return std::hash<std::string>{}(v.value());
  }
};

template <class Tag>
struct std::hash<sb::events::detail::IntValue<Tag>> {
  std::size_t operator()(sb::events::detail::IntValue<Tag> v) const noexcept {
    return std::hash<std::int64_t>{}(v.value());
  }
};

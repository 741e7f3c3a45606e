#include "switchboard/events/types.hpp"

#include <charconv>

#include "switchboard/events/limits.hpp"
#include "switchboard/events/uuid.hpp"

namespace sb::events {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// Visible ASCII only: these ids end up in AMQP headers, URLs, log lines and
// SQL, where spaces, control characters or invalid UTF-8 cause trouble.
std::optional<std::string> check_visible_ascii(std::string_view v, std::size_t max_bytes) {
  if (v.empty()) return "empty";
  if (v.size() > max_bytes) {
    return std::to_string(v.size()) + " bytes, at most " + std::to_string(max_bytes) + " allowed";
  }
  for (char c : v) {
    if (c < 0x21 || c > 0x7E) return "contains a character that is not visible ASCII";
  }
  return std::nullopt;
}

std::optional<std::string> check_segments(std::string_view v, std::size_t max_bytes,
                                          std::size_t min_segments, std::size_t max_segments,
                                          const char* shape) {
  if (v.empty()) return "empty";
  if (v.size() > max_bytes) {
    return std::to_string(v.size()) + " bytes, at most " + std::to_string(max_bytes) + " allowed";
  }
  std::size_t segments = 1;
  bool segment_empty = true;
  for (char c : v) {
    if (c == '.') {
      if (segment_empty) break;
      ++segments;
      segment_empty = true;
    } else if (is_name_char(c)) {
      segment_empty = false;
    } else {
      return "'" + std::string(v) + "' must be " + shape + " with segments of [a-z0-9_-]";
    }
  }
  if (segment_empty || segments < min_segments || segments > max_segments) {
    return "'" + std::string(v) + "' must be " + shape + " with segments of [a-z0-9_-]";
  }
  return std::nullopt;
}

}  // namespace

namespace detail {

std::optional<std::string> StreamIdTag::check(std::string& v) {
  return check_visible_ascii(v, kMaxStreamIdBytes);
}

std::optional<std::string> EventTypeTag::check(std::string& v) {
  return check_segments(v, kMaxEventTypeBytes, 2, kMaxEventTypeBytes, "<context>.<entity>.<verb>");
}

std::optional<std::string> CommandNameTag::check(std::string& v) {
  return check_segments(v, kMaxCommandNameBytes, 2, 2, "<service>.<command>");
}

std::optional<std::string> TenantIdTag::check(std::string& v) {
  if (v.empty() || v.size() > kMaxTenantIdBytes) {
    return "'" + v + "' must be 1.." + std::to_string(kMaxTenantIdBytes) + " characters";
  }
  for (char c : v) {
    if (!is_name_char(c)) return "'" + v + "' may only contain [a-z0-9_-]";
  }
  return std::nullopt;
}

std::optional<std::string> EventIdTag::check(std::string& v) {
  auto id = Uuid::try_parse(v);
  if (!id) return "'" + v + "' is not a UUID";
  v = id->to_string();
  return std::nullopt;
}

std::optional<std::string> CommandIdTag::check(std::string& v) {
  return check_visible_ascii(v, kMaxIdBytes);
}
std::optional<std::string> CorrelationIdTag::check(std::string& v) {
  return check_visible_ascii(v, kMaxIdBytes);
}
std::optional<std::string> CausationIdTag::check(std::string& v) {
  return check_visible_ascii(v, kMaxIdBytes);
}
std::optional<std::string> ActorIdTag::check(std::string& v) {
  return check_visible_ascii(v, kMaxIdBytes);
}

}  // namespace detail

TenantId system_tenant() {
  return TenantId("_system");
}

bool is_reserved_tenant(const TenantId& tenant) {
  return tenant.value().front() == '_';
}

CausationId caused_by(const EventId& id) {
  return CausationId(id.value());
}
CausationId caused_by(const CommandId& id) {
  return CausationId(id.value());
}

std::string ExpectedVersion::to_string() const {
  switch (kind_) {
    case Kind::any:
      return "any";
    case Kind::no_stream:
      return "no_stream";
    case Kind::stream_exists:
      return "stream_exists";
    case Kind::exact:
      return std::to_string(version_);
  }
  return "any";
}

ExpectedVersion ExpectedVersion::parse(std::string_view text) {
  if (text == "any") return any();
  if (text == "no_stream") return no_stream();
  if (text == "stream_exists") return stream_exists();
  std::int64_t n = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (text.empty() || ec != std::errc() || ptr != end || n < 0) {
    throw InvalidValue("invalid expected version '" + std::string(text) +
                       "': use any, no_stream, stream_exists or a version >= 0");
  }
  return exact(StreamVersion(n));
}

}  // namespace sb::events

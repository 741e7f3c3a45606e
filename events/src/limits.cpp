#include "switchboard/events/limits.hpp"

#include "switchboard/events/envelope.hpp"

namespace sb::events {
namespace {
std::optional<LimitViolation> over(std::string what, std::size_t actual, std::size_t limit) {
  if (actual <= limit) return std::nullopt;
  return LimitViolation{std::move(what), actual, limit};
}
}  // namespace

std::string LimitViolation::message() const {
  return what + " is too large: " + std::to_string(actual) + ", at most " + std::to_string(limit) +
         " allowed";
}

std::optional<LimitViolation> check_limits(const NewEvent& event) {
  if (auto v = over("event data (bytes)", event.data.size_bytes(), kMaxEventDataBytes)) return v;
  return over("event meta (bytes)", event.meta.size_bytes(), kMaxEventMetaBytes);
}

std::optional<LimitViolation> check_append_limits(std::span<const NewEvent> events) {
  if (auto v = over("events per append", events.size(), kMaxEventsPerAppend)) return v;
  std::size_t total = 0;
  for (const auto& e : events) {
    if (auto v = check_limits(e)) return v;
    total += e.data.size_bytes() + e.meta.size_bytes();
  }
  return over("append (bytes of data and meta)", total, kMaxAppendBytes);
}

std::optional<LimitViolation> check_command_body_limit(std::size_t body_bytes) {
  return over("command body (bytes)", body_bytes, kMaxCommandBodyBytes);
}

}  // namespace sb::events

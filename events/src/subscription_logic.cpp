#include "switchboard/events/subscription_logic.hpp"

#include <algorithm>
#include <cmath>

namespace sb::events {

std::int64_t scan_upper_bound(Position after, Position head, std::int64_t scan_window) {
  if (scan_window > 0 && after.value() < head.value() - scan_window) {
    return after.value() + scan_window;
  }
  return head.value();
}

Position page_scanned_to(Position after, std::int64_t upper, std::size_t rows, std::size_t limit,
                         std::optional<Position> last_row) {
  if (upper <= after.value()) return after;
  if (rows >= limit && last_row) return *last_row;
  return Position(upper);
}

PageStep plan_page_step(Position checkpoint, std::size_t events, Position scanned_to,
                        Position head) {
  PageStep step;
  step.new_checkpoint = std::max(checkpoint, scanned_to);
  step.write = events > 0 || step.new_checkpoint > checkpoint;
  step.caught_up = step.new_checkpoint >= head;
  return step;
}

std::chrono::milliseconds RetryBackoff::delay_before(int attempt) const {
  if (attempt <= 1) return std::chrono::milliseconds(0);
  const double d = static_cast<double>(initial.count()) * std::pow(factor, attempt - 2);
  if (!std::isfinite(d) || d >= static_cast<double>(max.count())) return max;
  return std::chrono::milliseconds(static_cast<std::int64_t>(d));
}

std::int64_t advisory_lock_key(std::string_view name, int partition) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ULL;
    }
  };
  mix("sb.subscription:");
  mix(name);
  mix(":");
  mix(std::to_string(partition));
  return static_cast<std::int64_t>(h);
}

bool is_valid_subscription_name(std::string_view name) {
  if (name.empty() || name.size() > 100) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '_' || c == '-' || c == '.'; });
}

void validate_subscription_name(std::string_view name) {
  if (!is_valid_subscription_name(name)) {
    throw InvalidValue("invalid subscription name '" + std::string(name) +
                       "': 1..100 of [a-z0-9_.-], starting with a letter or digit");
  }
}

void RateMeter::add(std::uint64_t events, Clock::time_point now) {
  samples_.emplace_back(now, events);
  trim(now);
}

double RateMeter::rate(Clock::time_point now) {
  trim(now);
  std::uint64_t total = 0;
  for (const auto& s : samples_) total += s.second;
  const double secs = std::chrono::duration<double>(window_).count();
  return secs > 0 ? static_cast<double>(total) / secs : 0.0;
}

void RateMeter::trim(Clock::time_point now) {
  while (!samples_.empty() && now - samples_.front().first > window_) samples_.pop_front();
}

}  // namespace sb::events

#pragma once
// The decisions of a checkpointed subscription, free of I/O so they are
// unit-tested without servers: how far a page lets the checkpoint advance,
// the retry schedule, the advisory-lock key of a partition, the rate meter.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "switchboard/events/types.hpp"

namespace sb::events {

/// The highest position a page may scan: the head, or `after + scan_window`
/// when the window is smaller (scan_window 0: no bound).
std::int64_t scan_upper_bound(Position after, Position head, std::int64_t scan_window);

/// Where a page leaves the reader: a full page (rows == limit) ends at its
/// last row, because rows after it may match too; a short page has seen
/// every position up to `upper`, matching or not.
Position page_scanned_to(Position after, std::int64_t upper, std::size_t rows, std::size_t limit,
                         std::optional<Position> last_row);

/// What a subscription does with a page it read after `checkpoint`.
struct PageStep {
  /// Write a transaction: there are events to handle or filtered-out
  /// positions to step over.
  bool write = false;
  /// The checkpoint after the page: never behind the current one (a reset
  /// past the head keeps its position).
  Position new_checkpoint;
  /// Nothing more is committed: wait for a head signal or the poll interval.
  bool caught_up = false;
};
PageStep plan_page_step(Position checkpoint, std::size_t events, Position scanned_to,
                        Position head);

/// Exponential backoff for retrying a failing page in-process.
struct RetryBackoff {
  /// Attempts in total, the first included; after the last one fails the
  /// failure policy applies.
  int attempts = 5;
  std::chrono::milliseconds initial{100};
  std::chrono::milliseconds max{10000};
  double factor = 2.0;

  /// The wait before attempt `attempt` (2, 3, ...): initial * factor^(attempt-2),
  /// capped at max; zero for attempt <= 1.
  std::chrono::milliseconds delay_before(int attempt) const;
};

/// A stable 64-bit advisory-lock key for (subscription, partition): FNV-1a
/// of "sb.subscription:<name>:<partition>", so every replica computes the same.
std::int64_t advisory_lock_key(std::string_view name, int partition);

/// Subscription and group names: 1..100 of [a-z0-9_.-], starting with a
/// letter or digit (they end up in queue names and lock keys).
bool is_valid_subscription_name(std::string_view name);
void validate_subscription_name(std::string_view name);

/// Events per second over a sliding window.
class RateMeter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateMeter(std::chrono::milliseconds window = std::chrono::seconds(10))
      : window_(window) {}
  void add(std::uint64_t events, Clock::time_point now = Clock::now());
  double rate(Clock::time_point now = Clock::now());

 private:
  void trim(Clock::time_point now);
  std::chrono::milliseconds window_;
  std::deque<std::pair<Clock::time_point, std::uint64_t>> samples_;
};

}  // namespace sb::events

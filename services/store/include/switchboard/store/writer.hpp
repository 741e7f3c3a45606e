#pragma once
// The single writer: the only code that inserts into the events table.
//
// Appends from any thread go into a bounded queue. One writer thread takes
// everything queued (up to a batch limit), plans the batch (idempotency by
// event id, expected versions in memory, positions from its own counter —
// see batch_planner.hpp), writes it in ONE transaction (group commit), and
// only then answers each append and tells the listener what was committed.
//
// Active/passive: the writer holds a PostgreSQL session advisory lock on its
// own connection, and commits on that same connection, so a successful
// commit proves it still held the lock. The connection never reconnects
// silently (sb::pg never does). If it is lost, the writer steps down to
// standby, waits for the lock again and reloads its state; appends whose
// commit outcome was in doubt are resolved by re-reading their event ids.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "switchboard/events/envelope.hpp"
#include "switchboard/events/types.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::store {

/// One append: events for one stream, with an expected version.
struct AppendRequest {
  events::StreamId stream;
  events::ExpectedVersion expected = events::ExpectedVersion::any();
  events::TenantId tenant;
  std::vector<events::NewEvent> events;
  /// The caller's deadline (the RPC's x-sb-deadline): an append still queued
  /// when it passes is refused with `deadline_exceeded` and never stored, so a
  /// caller that gave up (an edge that answered 504) never sees it applied.
  /// Once an append has entered a commit it is always decided, late or not.
  std::optional<std::chrono::system_clock::time_point> deadline = std::nullopt;
};

/// The writer's answer. Exactly one of the kinds; positions per event.
struct AppendResult {
  enum class Kind {
    appended,     // newly stored
    duplicate,    // every event id was already stored: the original positions
    conflict,     // expected version not met: current_version says what it is
    rejected,     // bad request (code/message say why); nothing stored
    unavailable,  // not stored: the writer is not active or is overloaded; retry
  };
  Kind kind = Kind::unavailable;
  std::vector<std::int64_t> positions;
  std::int64_t last_version = -1;     // appended/duplicate: the stream's version after
  std::int64_t current_version = -1;  // conflict: the stream's version (-1: no stream)
  std::string code;
  std::string message;
};

const char* to_string(AppendResult::Kind kind);

struct WriterOptions {
  pg::ConnectOptions connection;
  /// The advisory lock that makes one store active (others wait on it).
  std::int64_t lock_key = 0x5b5707e;  // "sb store"
  std::size_t max_queued_requests = 20000;
  std::size_t max_batch_events = 2000;
  std::size_t max_cached_streams = 200000;
  /// How often a standby retries the lock, and how long to wait between
  /// connection attempts while PostgreSQL is unreachable.
  std::chrono::milliseconds standby_poll{250};
};

/// Told about every commit, in position order, on the writer thread (keep it
/// short: wake another thread).
struct CommitListener {
  std::function<void(std::int64_t head)> on_active;  // lock taken; head loaded
  std::function<void()> on_standby;                  // lock lost or released
  std::function<void(const std::vector<events::Event>& committed, std::int64_t head)> on_commit;
  /// The same commit, for a listener that keeps the events (no copy); called
  /// right after on_commit.
  std::function<void(std::shared_ptr<const std::vector<events::Event>> committed,
                     std::int64_t head)>
      on_commit_batch = {};
};

class Writer : public app::Component {
 public:
  using Callback = std::function<void(AppendResult)>;

  Writer(WriterOptions options, CommitListener listener);
  ~Writer() override;

  std::string_view name() const override { return "store-writer"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  /// Queues an append; `done` runs exactly once, on the writer thread (or at
  /// once with `unavailable` when the queue is full or the writer stopped).
  void append(AppendRequest request, Callback done);

  bool active() const noexcept;
  std::int64_t head() const noexcept;

  struct Stats {
    std::uint64_t batches = 0;
    std::uint64_t requests = 0;
    std::uint64_t events = 0;
    std::uint64_t conflicts = 0;
    std::uint64_t duplicates = 0;
  };
  Stats stats() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::store

#pragma once
// Command handlers over event-sourced aggregates: load the stream, fold its
// events into a state, decide, append with the expected version = the
// loaded version; on wrong_expected_version (someone appended in between)
// load again and decide again, a bounded number of times.
//
// Idempotent: the events' ids derive from the command id (CommandContext),
// and a command (or reaction) whose events are already in the stream is
// answered from them as a duplicate, without deciding again. So a retried
// command, a redelivered event or a page a subscription handles twice
// appends nothing twice, and two replicas racing on one stream cannot both
// apply a decision made on the same state.
//
//   struct Order { bool placed = false; std::string status; };
//   auto done = sdk::execute<Order>(
//       ctx.commands(), loader, "order-" + id,
//       [](Order& o, const events::Event& e) { ... },
//       [&](const Order& o) -> sdk::Decision {
//         if (o.placed) return sdk::Decision::refuse(409, "order_exists", "already placed");
//         return sdk::Decision::emit({{"shop.order.placed", data}});
//       });
//   return done.response();

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "switchboard/events/catalog.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/sdk/sdk.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::sdk {

/// What a decide function answers: the events to append (none: nothing to
/// do, the state already says so) or a refusal (a domain rule).
struct Decision {
  std::vector<NewEvent> events;
  std::optional<Response> refusal;

  static Decision emit(std::vector<NewEvent> events) { return {std::move(events), std::nullopt}; }
  static Decision none() { return {}; }
  static Decision refuse(int status, std::string_view code, std::string_view message,
                         std::string details_json = "{}") {
    return {{}, Response::error(status, code, message, std::move(details_json))};
  }
};

/// Reads a stream for execute(); a fake in unit tests.
class StreamLoader {
 public:
  virtual ~StreamLoader() = default;
  /// Calls `each` for every event of `stream` in version order; returns the
  /// stream's last version (-1: no stream).
  virtual std::int64_t load(std::string_view stream,
                            const std::function<void(const events::Event&)>& each) const = 0;
};

/// Straight from the store's database (events::EventReader::read_stream, in
/// pages). The plugin has the database URL (sdk::database(cfg)).
class StoreLoader final : public StreamLoader {
 public:
  explicit StoreLoader(std::shared_ptr<pg::Pool> store, const events::Catalog* catalog = nullptr,
                       std::size_t page_size = 500);
  std::int64_t load(std::string_view stream,
                    const std::function<void(const events::Event&)>& each) const override;

 private:
  std::shared_ptr<pg::Pool> store_;
  const events::Catalog* catalog_;
  std::size_t page_size_;
};

struct ExecuteOptions {
  int max_attempts = 5;  // loads + decisions, counting the first
};

/// What came of execute().
struct Executed {
  enum class Kind {
    appended,  // outcome.ok (outcome.duplicate: it had been applied before)
    nothing,   // decide emitted nothing
    refused,   // decide refused: `refusal`
    failed,    // the append failed (outcome), e.g. still conflicting after max_attempts
  };
  Kind kind = Kind::nothing;
  AppendOutcome outcome;
  std::optional<Response> refusal;
  std::int64_t version = -1;  // the stream's version as last loaded or appended
  int attempts = 0;

  bool ok() const noexcept { return kind == Kind::appended || kind == Kind::nothing; }
  /// The reply of section 9.2: the append's, the refusal, or for nothing to
  /// do 200 {"stream","version"}.
  Response response() const;
  /// Reactions: throws std::runtime_error when the append failed (so the
  /// subscription retries); refusals and "nothing" are fine.
  void throw_if_failed() const;
};

namespace detail {
Executed execute(CommandContext& ctx, const StreamLoader& loader, std::string_view stream,
                 const std::function<void()>& reset,
                 const std::function<void(const events::Event&)>& fold,
                 const std::function<Decision()>& decide, const ExecuteOptions& options);
}

/// Load `stream` folding its events into a fresh State{}, decide on it,
/// append with the loaded version expected; retry on conflict.
template <class State, class Fold, class Decide>
Executed execute(CommandContext& ctx, const StreamLoader& loader, std::string_view stream,
                 Fold&& fold, Decide&& decide, ExecuteOptions options = {}) {
  State state{};
  return detail::execute(
      ctx, loader, stream, [&] { state = State{}; },
      [&](const events::Event& e) { fold(state, e); },
      [&]() -> Decision { return decide(std::as_const(state)); }, options);
}

}  // namespace sb::sdk

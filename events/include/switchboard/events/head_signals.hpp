#pragma once
// The store's head signal: after each commit the store publishes a transient
// `{"position": N}` to sb.signals with routing key `store.head.advanced`.
// HeadSignals receives it on an exclusive, auto-delete, bounded queue of its
// own (every replica sees every signal) and wakes whoever listens. A lost
// signal only delays a subscription until its fallback poll: nothing is ever
// read from the signal but "look now".

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "switchboard/broker/message.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/events/types.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::broker {
class Consumer;
}

namespace sb::events {

inline constexpr std::string_view kHeadSignalKey = "store.head.advanced";

/// The signal message: transient, body {"position": N}.
broker::Message head_signal_message(Position head);
/// Publishes it to sb.signals (fire and forget: a lost signal only delays).
/// The deadline bounds how long a full publish window may block the caller
/// (e.g. the store's writer thread while the broker is away).
void publish_head_signal(broker::Publisher& publisher, Position head,
                         std::chrono::milliseconds deadline = std::chrono::milliseconds(1000));
/// The position in a signal body; nullopt when it is not one.
std::optional<Position> parse_head_signal(std::string_view body);

class HeadSignals : public app::Component {
 public:
  using Listener = std::function<void(Position)>;
  using ListenerId = std::uint64_t;

  /// `instance` names the queue (`sb.head.<instance>.<random>`).
  HeadSignals(broker::ConnectionOptions connection, std::string instance = "sub");
  ~HeadSignals() override;

  std::string_view name() const override { return "head-signals"; }
  /// Declares the queue and starts consuming (throws broker errors).
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  /// Listeners run on a broker worker thread: keep them short (wake a thread).
  ListenerId subscribe(Listener listener);
  /// After it returns, the listener is not running and will not run again.
  void unsubscribe(ListenerId id);

  /// The highest position signalled so far (0: none yet).
  Position last_signalled() const;
  std::uint64_t received() const;
  const std::string& queue() const noexcept { return queue_; }

 private:
  void on_signal(std::string_view body);

  broker::ConnectionOptions connection_;
  std::string queue_;
  std::unique_ptr<broker::Consumer> consumer_;
  mutable std::mutex mu_;
  std::map<ListenerId, Listener> listeners_;
  ListenerId next_id_ = 0;
  std::int64_t last_ = 0;
  std::uint64_t received_ = 0;
};

}  // namespace sb::events

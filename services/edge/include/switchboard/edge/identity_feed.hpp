#pragma once
// Feeds the IdentityView (identity_view.hpp) from the store's events table:
// at start every identity.* event the view keeps, in position order, page
// by page (the view is marked loaded at the head); then the new ones, woken
// by the store's head signal with a periodic poll as a backstop. Positions
// are committed in order by the store's one writer, so reading after the
// last scanned position never skips or reorders an event; a failed read is
// retried from the same position.

#include <chrono>
#include <cstddef>
#include <memory>

#include "switchboard/shared/lifecycle.hpp"

namespace sb::pg {
class Pool;
}
namespace sb::events {
class HeadSignals;
}

namespace sb::edge {

class IdentityView;

struct IdentityFeedOptions {
  std::chrono::milliseconds poll{1000};   // re-read without a signal
  std::chrono::milliseconds retry{1000};  // after a failed read
  std::size_t page = 1000;
};

class IdentityFeed {
 public:
  IdentityFeed(std::shared_ptr<pg::Pool> pool, std::shared_ptr<IdentityView> view,
               std::shared_ptr<events::HeadSignals> signals, IdentityFeedOptions options = {});
  ~IdentityFeed();
  IdentityFeed(const IdentityFeed&) = delete;
  IdentityFeed& operator=(const IdentityFeed&) = delete;

  /// Starts the reading thread (the initial load runs there too).
  void start();
  void stop();
  /// starting until the initial load is done; degraded while reads fail.
  app::Health health() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::edge

#include "switchboard/edge/identity_feed.hpp"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "switchboard/edge/identity_view.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::edge {

namespace {

struct Metrics {
  metrics::Gauge& position = metrics::Registry::global().gauge(
      "sb_edge_identity_position", "Last store position the identity view has applied");
  metrics::Counter& applied = metrics::Registry::global().counter(
      "sb_edge_identity_events_total", "Identity events folded into the view");
  metrics::Counter& malformed = metrics::Registry::global().counter(
      "sb_edge_identity_malformed_total", "Identity events the view could not use");
  metrics::Gauge& revoked = metrics::Registry::global().gauge("sb_edge_identity_revoked_sessions",
                                                              "Session revocations held in memory");
};
Metrics& m() {
  static Metrics metrics;
  return metrics;
}

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct IdentityFeed::Impl {
  std::shared_ptr<pg::Pool> pool;
  std::shared_ptr<IdentityView> view;
  std::shared_ptr<events::HeadSignals> signals;
  IdentityFeedOptions options;
  events::EventReader reader;
  events::Filter filter;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool wake = true;
  bool stopping = false;
  bool failing = false;
  std::string last_error;
  std::int64_t cursor = 0;  // every position <= cursor is applied or not the view's
  std::uint64_t listener = 0;
  bool listening = false;
  std::thread thread;

  Impl(std::shared_ptr<pg::Pool> p, std::shared_ptr<IdentityView> v,
       std::shared_ptr<events::HeadSignals> s, IdentityFeedOptions o)
      : pool(std::move(p)), view(std::move(v)), signals(std::move(s)), options(o), reader(*pool) {
    filter.types = identity_event_patterns();
  }

  void run() {
    while (true) {
      {
        std::unique_lock lock(mu);
        const auto wait = failing ? options.retry : options.poll;
        cv.wait_for(lock, wait, [&] { return wake || stopping; });
        if (stopping) return;
        wake = false;
      }
      try {
        catch_up();
        std::lock_guard lock(mu);
        failing = false;
      } catch (const pg::Error& e) {
        // No events table yet (the store has not migrated this database):
        // there are no identity events to load; keep polling for them.
        if (e.sqlstate() == "42P01" && cursor == 0) {
          if (!view->loaded()) {
            view->mark_loaded();
            log::info("identity view loaded: the store has no events table yet");
          }
          continue;
        }
        fail(e);
      } catch (const std::exception& e) {
        fail(e);
      }
      m().revoked.set(static_cast<double>(view->revoked_sessions()));
    }
  }

  void fail(const std::exception& e) {
    std::lock_guard lock(mu);
    if (!failing) {
      log::warn("identity view cannot read the store; retrying",
                {{"error", e.what()}, {"position", cursor}});
    }
    failing = true;
    last_error = e.what();
  }

  // Reads and applies pages until the head.
  void catch_up() {
    while (true) {
      {
        std::lock_guard lock(mu);
        if (stopping) return;
      }
      auto page = reader.read_all(events::Position(cursor), filter, options.page);
      for (const auto& e : page.events) {
        try {
          if (view->apply(e)) m().applied.inc();
        } catch (const std::exception& ex) {
          m().malformed.inc();
          log::warn(
              "identity event not usable by the edge",
              {{"error", ex.what()}, {"type", e.type.value()}, {"position", e.position.value()}});
        }
      }
      if (page.scanned_to.value() > cursor) cursor = page.scanned_to.value();
      m().position.set(static_cast<double>(cursor));
      if (page.at_head()) break;
    }
    if (!view->loaded()) {
      view->mark_loaded();
      log::info("identity view loaded",
                {{"position", cursor}, {"api_keys", static_cast<std::int64_t>(view->api_keys())}});
    }
    view->prune(now_s());
  }
};

IdentityFeed::IdentityFeed(std::shared_ptr<pg::Pool> pool, std::shared_ptr<IdentityView> view,
                           std::shared_ptr<events::HeadSignals> signals,
                           IdentityFeedOptions options)
    : impl_(std::make_shared<Impl>(std::move(pool), std::move(view), std::move(signals), options)) {
}

IdentityFeed::~IdentityFeed() {
  stop();
}

void IdentityFeed::start() {
  if (impl_->signals) {
    std::weak_ptr<Impl> weak = impl_;
    impl_->listener = impl_->signals->subscribe([weak](events::Position) {
      if (auto i = weak.lock()) {
        std::lock_guard lock(i->mu);
        i->wake = true;
        i->cv.notify_all();
      }
    });
    impl_->listening = true;
  }
  impl_->thread = std::thread([i = impl_] { i->run(); });
}

void IdentityFeed::stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  if (impl_->listening) impl_->signals->unsubscribe(impl_->listener);
  if (impl_->thread.joinable()) impl_->thread.join();
}

app::Health IdentityFeed::health() const {
  std::lock_guard lock(impl_->mu);
  if (!impl_->view->loaded()) {
    return {app::HealthState::starting,
            "identity view loading" + (impl_->failing ? ": " + impl_->last_error : std::string())};
  }
  if (impl_->failing) {
    return {app::HealthState::degraded, "identity view behind: " + impl_->last_error};
  }
  return {};
}

}  // namespace sb::edge

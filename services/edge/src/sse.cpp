#include "switchboard/edge/sse.hpp"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "switchboard/edge/redaction.hpp"
#include "switchboard/events/head_signals.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::edge {

bool event_matches(const events::Filter& f, const events::Event& e) {
  if (!f.types.empty()) {
    bool any = false;
    for (const auto& t : f.types) {
      if (events::type_matches(t, e.type.value())) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  if (f.tenant && f.tenant->value() != e.tenant.value()) return false;
  if (f.stream && f.stream->value() != e.stream.value()) return false;
  if (f.actor && (!e.actor || e.actor->value() != *f.actor)) return false;
  if (f.correlation_id && f.correlation_id->value() != e.correlation_id.value()) return false;
  if (f.recorded_from && e.recorded_at < *f.recorded_from) return false;
  if (f.recorded_to && !(e.recorded_at < *f.recorded_to)) return false;
  return true;
}

std::string sse_frame(const events::Event& e) {
  std::string out = "id: " + std::to_string(e.position.value()) + "\nevent: " + e.type.value() +
                    "\ndata: " + events::to_json(redacted(e)) + "\n\n";
  return out;
}

namespace {

struct Metrics {
  metrics::Gauge& clients =
      metrics::Registry::global().gauge("sb_edge_sse_clients", "Connected SSE clients");
  metrics::Counter& overflows = metrics::Registry::global().counter(
      "sb_edge_sse_overflows_total", "SSE clients ended because they fell too far behind");
  metrics::Counter& refused = metrics::Registry::global().counter(
      "sb_edge_sse_refused_total", "SSE clients refused: the limit was reached");
  metrics::Counter& frames =
      metrics::Registry::global().counter("sb_edge_sse_events_total", "Events sent to SSE clients");
};
Metrics& m() {
  static Metrics metrics;
  return metrics;
}

}  // namespace

struct SseHub::Impl : std::enable_shared_from_this<SseHub::Impl> {
  struct Client {
    events::Filter filter;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<std::int64_t, std::string>> queue;
    bool overflow = false;
    bool closed = false;
  };

  std::shared_ptr<pg::Pool> pool;
  SseOptions options;
  std::shared_ptr<events::HeadSignals> signals;
  events::EventReader reader;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::uint64_t, std::shared_ptr<Client>> clients;
  std::uint64_t next_id = 0;
  std::int64_t cursor = 0;
  bool cursor_known = false;  // the head was read once
  bool wake = false;
  bool stopping = false;
  bool started = false;
  std::uint64_t listener = 0;
  std::thread tail;

  Impl(std::shared_ptr<pg::Pool> p, SseOptions o, std::shared_ptr<events::HeadSignals> s)
      : pool(std::move(p)), options(o), signals(std::move(s)), reader(*pool) {}

  void run() {
    while (true) {
      {
        std::unique_lock lock(mu);
        cv.wait_for(lock, options.poll, [&] { return wake || stopping; });
        if (stopping) return;
        wake = false;
        if (clients.empty() || !cursor_known) {
          // Nobody listens: only keep the cursor at the head.
          lock.unlock();
          try {
            auto head = reader.head().value();
            std::lock_guard relock(mu);
            // Skip ahead only while still nobody listens: a client that
            // registered meanwhile starts at the old cursor and needs the
            // events after it pushed (next round).
            if (clients.empty() && head > cursor) cursor = head;
            cursor_known = true;
            if (!clients.empty()) wake = true;
          } catch (const std::exception& e) {
            log::warn("sse tail cannot read the head", {{"error", e.what()}});
          }
          continue;
        }
      }
      try {
        pump();
      } catch (const std::exception& e) {
        log::warn("sse tail read failed", {{"error", e.what()}});
      }
    }
  }

  void pump() {
    while (true) {
      std::int64_t after = 0;
      {
        std::lock_guard lock(mu);
        if (stopping) return;
        after = cursor;
      }
      auto page = reader.read_all(events::Position(after), events::Filter{}, options.page);
      std::vector<std::shared_ptr<Client>> targets;
      {
        // One step: who gets this page, and where a client registering from
        // now on starts its catch-up. A client registered before gets the
        // page pushed; one registered after reads it from the database.
        std::lock_guard lock(mu);
        for (const auto& [id, c] : clients) targets.push_back(c);
        if (page.scanned_to.value() > cursor) cursor = page.scanned_to.value();
      }
      for (const auto& e : page.events) {
        std::string frame;
        for (const auto& c : targets) {
          if (!event_matches(c->filter, e)) continue;
          if (frame.empty()) frame = sse_frame(e);
          std::lock_guard lock(c->mu);
          if (c->closed || c->overflow) continue;
          if (c->queue.size() >= options.client_queue) {
            c->overflow = true;
            m().overflows.inc();
          } else {
            c->queue.emplace_back(e.position.value(), frame);
          }
          c->cv.notify_one();
        }
      }
      if (page.at_head() || page.scanned_to.value() <= after) return;
    }
  }
};

SseHub::SseHub(std::shared_ptr<pg::Pool> pool, SseOptions options,
               std::shared_ptr<events::HeadSignals> signals)
    : impl_(std::make_shared<Impl>(std::move(pool), options, std::move(signals))) {}

SseHub::~SseHub() {
  stop();
}

void SseHub::start() {
  try {
    impl_->cursor = impl_->reader.head().value();
    impl_->cursor_known = true;
  } catch (const std::exception& e) {
    // No events table yet, or the database is away: the tail retries.
    log::warn("sse tail cannot read the head yet", {{"error", e.what()}});
  }
  if (impl_->signals) {
    std::weak_ptr<Impl> weak = impl_;
    impl_->listener = impl_->signals->subscribe([weak](events::Position) {
      if (auto i = weak.lock()) {
        std::lock_guard lock(i->mu);
        i->wake = true;
        i->cv.notify_all();
      }
    });
  }
  impl_->started = true;
  impl_->tail = std::thread([i = impl_] { i->run(); });
}

void SseHub::stop() {
  std::vector<std::shared_ptr<Impl::Client>> all;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    impl_->cv.notify_all();
    for (const auto& [id, c] : impl_->clients) all.push_back(c);
  }
  for (const auto& c : all) {
    std::lock_guard lock(c->mu);
    c->closed = true;
    c->cv.notify_all();
  }
  if (impl_->signals && impl_->started) impl_->signals->unsubscribe(impl_->listener);
  if (impl_->tail.joinable()) impl_->tail.join();
}

std::size_t SseHub::clients() const {
  std::lock_guard lock(impl_->mu);
  return impl_->clients.size();
}

std::int64_t SseHub::position() const {
  std::lock_guard lock(impl_->mu);
  return impl_->cursor;
}

std::int64_t SseHub::resume_point(const HttpRequest& req) const {
  std::optional<std::string> v;
  if (const auto* h = req.header("last-event-id")) v = *h;
  if (!v) v = query_param(req.query, "last_event_id");
  if (!v) v = query_param(req.query, "after");
  if (!v) return position();
  const auto n = text::parse_int(*v);
  if (!n || *n < 0) {
    throw HttpError(400, "invalid_request", "Last-Event-ID must be an event position",
                    "{\"header\":\"Last-Event-ID\"}");
  }
  return *n;
}

HttpResponse SseHub::open(const events::Filter& filter, std::int64_t last_id) {
  auto impl = impl_;
  auto client = std::make_shared<Impl::Client>();
  client->filter = filter;
  std::uint64_t id = 0;
  std::int64_t registered_at = 0;
  {
    std::lock_guard lock(impl->mu);
    if (impl->stopping) throw HttpError(503, "unavailable", "the edge is stopping");
    if (!impl->cursor_known) {
      throw HttpError(503, "events_unavailable", "the event store cannot be read yet");
    }
    if (impl->clients.size() >= impl->options.max_clients) {
      m().refused.inc();
      auto r = error_response(503, "too_many_streams", "too many live streams on this edge");
      r.set_header("retry-after", "5");
      return r;
    }
    id = ++impl->next_id;
    registered_at = impl->cursor;
    impl->clients.emplace(id, client);
    m().clients.set(static_cast<double>(impl->clients.size()));
  }
  // Unregisters when the last copy of the producer goes, streamed or not.
  struct Leave {
    std::shared_ptr<Impl> impl;
    std::uint64_t id;
    ~Leave() {
      std::lock_guard lock(impl->mu);
      impl->clients.erase(id);
      m().clients.set(static_cast<double>(impl->clients.size()));
    }
  };
  std::shared_ptr<Leave> leave(new Leave{impl, id});  // no temporary: its destructor unregisters
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.set_header("cache-control", "no-cache");
  r.set_header("x-accel-buffering", "no");
  r.stream = [impl, client, leave, last_id,
              registered_at](const std::function<bool(std::string_view)>& write) {
    std::int64_t sent = last_id;
    if (!write(": connected\nretry: 2000\n\n")) return;
    // Catch up from the database: (last id, registered_at].
    try {
      while (sent < registered_at) {
        auto page =
            impl->reader.read_all(events::Position(sent), client->filter, impl->options.page);
        std::string buf;
        for (const auto& e : page.events) {
          if (e.position.value() > registered_at) break;
          buf += sse_frame(e);
          m().frames.inc();
        }
        if (!buf.empty() && !write(buf)) return;
        const auto next = std::min(page.scanned_to.value(), registered_at);
        if (next <= sent) break;
        sent = next;
      }
    } catch (const std::exception& e) {
      log::warn("sse catch-up failed", {{"error", e.what()}});
      write("event: error\ndata: {\"code\":\"catch_up_failed\"}\n\n");
      return;
    }
    sent = std::max(sent, registered_at);
    // Live.
    while (true) {
      std::deque<std::pair<std::int64_t, std::string>> batch;
      bool overflow = false;
      {
        std::unique_lock lock(client->mu);
        client->cv.wait_for(lock, impl->options.ping, [&] {
          return client->closed || client->overflow || !client->queue.empty();
        });
        if (client->closed) return;
        batch.swap(client->queue);
        overflow = client->overflow;
      }
      if (batch.empty() && !overflow) {
        if (!write(": ping\n\n")) return;
        continue;
      }
      std::string buf;
      for (auto& [pos, frame] : batch) {
        if (pos <= sent) continue;
        buf += frame;
        sent = pos;
        m().frames.inc();
      }
      if (!buf.empty() && !write(buf)) return;
      if (overflow) {
        write("event: overflow\ndata: {\"resume_after\":" + std::to_string(sent) + "}\n\n");
        return;
      }
    }
  };
  return r;
}

}  // namespace sb::edge

#pragma once
// The live tail: GET /api/v1/events/stream as Server-Sent Events.
//
// One tail thread per edge reads every new event once (woken by the store's
// head signal, with a poll as fallback) and hands it to each connected
// client whose filter matches, through a bounded queue per client. A client
// registers at the tail's current position H: it first reads (last id, H]
// from the database with its filter, then what the tail queued (> H) — so a
// reconnect with Last-Event-ID misses nothing and sees nothing twice. A
// client whose queue overflows (too slow) is ended with an `overflow` event
// and resumes with Last-Event-ID. Pings (comment lines) find dead clients.
// Clients are bounded (503 beyond); each holds one HTTP worker while
// connected, so the edge sizes its pool for them on top of http.threads.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "switchboard/edge/events_api.hpp"
#include "switchboard/edge/http.hpp"
#include "switchboard/events/reader.hpp"

namespace sb::pg {
class Pool;
}
namespace sb::events {
class HeadSignals;
}

namespace sb::edge {

struct SseOptions {
  std::size_t max_clients = 128;
  std::size_t client_queue = 10000;  // events waiting per client
  std::chrono::milliseconds ping{15000};
  std::chrono::milliseconds poll{1000};  // tail re-read without a signal
  std::size_t page = 1000;
};

/// Whether `event` passes `filter` (the in-memory form of filter_sql).
bool event_matches(const events::Filter& filter, const events::Event& event);

/// One SSE frame: `id: <position>`, `event: <type>`, `data: <envelope>`.
std::string sse_frame(const events::Event& event);

class SseHub {
 public:
  SseHub(std::shared_ptr<pg::Pool> pool, SseOptions options,
         std::shared_ptr<events::HeadSignals> signals);
  ~SseHub();
  SseHub(const SseHub&) = delete;
  SseHub& operator=(const SseHub&) = delete;

  void start();
  /// Ends every stream and the tail thread.
  void stop();

  /// The streaming response for one client (or 503 when full). `last_id` is
  /// the last position the client has (0: only new events).
  HttpResponse open(const events::Filter& filter, std::int64_t last_id);
  /// `after` for a request: Last-Event-ID, `last_event_id` or `after`, else
  /// the current tail position (live only). Throws HttpError 400.
  std::int64_t resume_point(const HttpRequest& request) const;

  std::size_t clients() const;
  std::int64_t position() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::edge

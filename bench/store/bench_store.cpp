// Event store benchmark, every figure beside a baseline measured in the same
// run on the same servers:
//   1. committed appends: the single writer (group commit) at 1, 10 and 100
//      events per append with 1, 8 and 64 concurrent writers, beside plain
//      multi-row INSERTs into a table with the same indexes, one transaction
//      per "append", by the same number of connections;
//   2. publishing: the store's ordered, confirmed publisher draining stored
//      events to sb.events, beside plain rabbitmq-c confirmed publishing of
//      the same bodies with the same window;
//   3. end to end: appends and publishing together; latency from commit
//      (recorded_at) to delivery to a consumer, p50/p99.
// Usage: bench_store POSTGRES_URL AMQP_URL [--quick]   (scripts/bench.sh store)

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "raw_amqp.hpp"
#include "switchboard/broker/consumer.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/event_publisher.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"

using namespace sb;
using Clock = std::chrono::steady_clock;

namespace {

std::string g_pg;
std::string g_amqp;
bool g_quick = false;

pg::ConnectOptions db_options(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

// A fresh database with the store's schema.
std::string fresh_db(const std::string& name) {
  pg::Connection admin(db_options(g_pg));
  admin.exec("DROP DATABASE IF EXISTS " + name);
  admin.exec("CREATE DATABASE " + name);
  auto url = g_pg.substr(0, g_pg.rfind('/') + 1) + name;
  pg::migrate(db_options(url), pg::store_migrations());
  return url;
}

const events::Payload& payload() {
  static const events::Payload p = events::Payload::parse(
      R"({"order":"o-1","sku":"SKU-12345","qty":3,"price":1999,"note":"benchmark event data"})");
  return p;
}

events::NewEvent new_event() {
  return events::NewEvent{.id = events::new_event_id(),
                          .type = events::EventType("bench.order.placed"),
                          .schema_version = 1,
                          .data = payload(),
                          .meta = events::Payload(),
                          .occurred_at = events::now_ms(),
                          .correlation_id = std::nullopt,
                          .causation_id = std::nullopt,
                          .actor = std::nullopt};
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Runs `writers` threads that each call `one()` (returning events done) until
// `total` events are done; returns events/s.
template <class Fn>
double run_threads(int writers, std::int64_t total, Fn one) {
  std::atomic<std::int64_t> done{0};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int w = 0; w < writers; ++w) {
    ts.emplace_back([&, w] {
      std::int64_t k = 0;
      while (done.load() < total) done += one(w, k++);
    });
  }
  for (auto& t : ts) t.join();
  return static_cast<double>(done.load()) / seconds_since(t0);
}

double store_appends(const std::string& url, int epa, int writers, std::int64_t total) {
  store::WriterOptions wo;
  wo.connection = db_options(url);
  store::Writer writer(wo, {});
  writer.start();
  while (!writer.active()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto rate = run_threads(writers, total, [&](int w, std::int64_t k) -> std::int64_t {
    store::AppendRequest r{
        events::StreamId("s-" + std::to_string(w) + "-" + std::to_string(k % 100)),
        events::ExpectedVersion::any(),
        events::TenantId("bench"),
        {},
        {}};
    for (int i = 0; i < epa; ++i) r.events.push_back(new_event());
    std::promise<store::AppendResult> p;
    auto f = p.get_future();
    writer.append(std::move(r), [&p](store::AppendResult res) { p.set_value(std::move(res)); });
    auto res = f.get();
    if (res.kind != store::AppendResult::Kind::appended) {
      throw std::runtime_error(std::string("append failed: ") + res.message);
    }
    return epa;
  });
  return rate;
}

// The same rows by plain multi-row INSERTs into a copy of the events table
// (same columns, constraints and indexes), one transaction per "append".
double raw_inserts(const std::string& url, int epa, int writers, std::int64_t total) {
  {
    pg::Connection c(db_options(url));
    c.exec("DROP TABLE IF EXISTS raw_events");
    c.exec("CREATE TABLE raw_events (LIKE events INCLUDING ALL)");
  }
  std::atomic<std::int64_t> position{0};
  std::string sql =
      "INSERT INTO raw_events (position, id, stream, version, type, schema_version, tenant, "
      "occurred_at, recorded_at, correlation_id, data, meta) VALUES ";
  for (int i = 0; i < epa; ++i) {
    int b = i * 12;
    sql += (i ? "," : "") + std::string("(");
    for (int c = 1; c <= 12; ++c) sql += (c > 1 ? ",$" : "$") + std::to_string(b + c);
    sql += ")";
  }
  std::vector<std::unique_ptr<pg::Connection>> conns;
  for (int w = 0; w < writers; ++w)
    conns.push_back(std::make_unique<pg::Connection>(db_options(url)));
  auto now = events::format_rfc3339_ms(events::now_ms());
  return run_threads(writers, total, [&](int w, std::int64_t k) -> std::int64_t {
    pg::Params params;
    auto first = position.fetch_add(epa) + 1;
    std::string stream = "s-" + std::to_string(w) + "-" + std::to_string(k);
    for (int i = 0; i < epa; ++i) {
      auto id = events::new_event_id().value();
      params.add(first + i)
          .add(id)
          .add(stream)
          .add(i)
          .add("bench.order.placed")
          .add(1)
          .add("bench")
          .add(now)
          .add(now)
          .add(id)
          .add(payload().text())
          .add("{}");
    }
    auto tx = conns[static_cast<std::size_t>(w)]->begin();
    tx.exec(sql, params);
    tx.commit();
    return epa;
  });
}

void section_appends() {
  std::printf("\n1. Committed appends (events/s)\n");
  std::printf("%-8s %-8s %14s %14s %8s\n", "ev/app", "writers", "store", "raw INSERT", "ratio");
  for (int epa : {1, 10, 100}) {
    for (int writers : {1, 8, 64}) {
      std::int64_t total = epa == 1 ? (writers == 1 ? 3000 : 20000) : (epa == 10 ? 60000 : 200000);
      if (g_quick) total /= 10;
      auto url = fresh_db("bench_store_appends");
      double s = store_appends(url, epa, writers, total);
      double r = raw_inserts(url, epa, writers, total);
      std::printf("%-8d %-8d %14.0f %14.0f %8.2f%s\n", epa, writers, s, r, s / r,
                  epa == 100 ? "   (goal >= 0.8)" : "");
      std::fflush(stdout);
    }
  }
}

broker::ConnectionOptions amqp_options() {
  broker::ConnectionOptions o;
  o.url = g_amqp;
  return o;
}

store::EventPublisherOptions publisher_options(const std::string& url) {
  store::EventPublisherOptions o;
  o.database = db_options(url);
  o.broker = amqp_options();
  return o;
}

bool wait_for(const std::function<bool()>& pred, std::chrono::seconds deadline) {
  auto until = Clock::now() + deadline;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

void section_publish() {
  const std::int64_t n = g_quick ? 10000 : 50000;
  auto url = fresh_db("bench_store_publish");
  store_appends(url, 100, 8, n);  // n events stored, none published yet
  bench::raw_bind_queue(g_amqp, "bench.sink", "sb.events", "#");

  double store_rate = 0;
  {
    store::EventPublisher publisher(publisher_options(url));
    publisher.start();
    auto t0 = Clock::now();
    publisher.on_active(n);
    if (!wait_for([&] { return publisher.published() >= n; }, std::chrono::seconds(120))) {
      throw std::runtime_error("store publisher did not finish");
    }
    store_rate = static_cast<double>(n) / seconds_since(t0);
    publisher.stop(Clock::now());
  }
  bench::raw_purge_queue(g_amqp, "bench.sink");

  // The same envelopes, published by plain rabbitmq-c with the same window.
  std::vector<std::string> keys;
  std::vector<std::string> bodies;
  {
    pg::Connection c(db_options(url));
    auto rows = c.exec(
        "SELECT type, json_build_object('id', id, 'type', type, 'schema', schema_version, "
        "'stream', stream, 'version', version, 'position', position, 'tenant', tenant, "
        "'occurred_at', occurred_at, 'recorded_at', recorded_at, 'correlation_id', correlation_id, "
        "'data', data, 'meta', meta)::text FROM events ORDER BY position");
    for (const auto& r : rows) {
      keys.push_back(r[0].get<std::string>());
      bodies.push_back(r[1].get<std::string>());
    }
  }
  auto t0 = Clock::now();
  bench::raw_publish_confirmed(g_amqp, "sb.events", keys, bodies, 2048);
  double raw_rate = static_cast<double>(n) / seconds_since(t0);
  bench::raw_purge_queue(g_amqp, "bench.sink");
  std::printf("\n2. Publishing stored events to sb.events (events/s, %lld events, window 2048)\n",
              static_cast<long long>(n));
  std::printf("%-28s %14.0f\n%-28s %14.0f\n%-28s %14.2f   (goal >= 0.8)\n", "store publisher",
              store_rate, "plain rabbitmq-c, confirms", raw_rate, "ratio", store_rate / raw_rate);
  std::fflush(stdout);
}

void section_end_to_end() {
  const std::int64_t n = g_quick ? 10000 : 50000;
  auto url = fresh_db("bench_store_e2e");
  bench::raw_bind_queue(g_amqp, "bench.sink", "sb.events", "#");
  std::mutex mutex;
  std::vector<double> latencies_ms;
  latencies_ms.reserve(static_cast<std::size_t>(n));
  broker::ConsumerOptions co;
  co.connection = amqp_options();
  co.workers = 2;
  broker::Consumer consumer(co);
  broker::QueueSpec q;
  q.name = "bench.sink";
  broker::ConsumeOptions opts;
  opts.prefetch = 1000;
  opts.retry.enabled = false;
  consumer.consume(q, opts, [&](const broker::Delivery& d) {
    auto now = events::now_ms();
    auto doc = json::parse(d.message.body);
    auto recorded = events::parse_rfc3339(json::require_string(doc, "recorded_at"));
    std::lock_guard lock(mutex);
    latencies_ms.push_back(static_cast<double>((now - recorded).count()));
  });

  store::EventPublisher publisher(publisher_options(url));
  publisher.start();
  store::WriterOptions wo;
  wo.connection = db_options(url);
  store::Writer writer(wo,
                       {.on_active = [&](std::int64_t h) { publisher.on_active(h); },
                        .on_standby = [&] { publisher.on_standby(); },
                        .on_commit = [&](const auto&, std::int64_t h) { publisher.on_commit(h); }});
  writer.start();
  wait_for([&] { return writer.active(); }, std::chrono::seconds(10));
  auto t0 = Clock::now();
  double append_rate = run_threads(8, n, [&](int w, std::int64_t k) -> std::int64_t {
    store::AppendRequest r{
        events::StreamId("s-" + std::to_string(w) + "-" + std::to_string(k % 100)),
        events::ExpectedVersion::any(),
        events::TenantId("bench"),
        {},
        {}};
    for (int i = 0; i < 10; ++i) r.events.push_back(new_event());
    std::promise<store::AppendResult> p;
    auto f = p.get_future();
    writer.append(std::move(r), [&p](store::AppendResult res) { p.set_value(std::move(res)); });
    f.get();
    return 10;
  });
  bool all = wait_for(
      [&] {
        std::lock_guard lock(mutex);
        return static_cast<std::int64_t>(latencies_ms.size()) >= n;
      },
      std::chrono::seconds(120));
  double overall = static_cast<double>(n) / seconds_since(t0);
  std::vector<double> copy;
  {
    std::lock_guard lock(mutex);
    copy = latencies_ms;
  }
  std::printf("\n3. End to end: 8 writers x 10 events/append, store publishing, one consumer\n");
  std::printf("%-34s %12.0f events/s\n%-34s %12.0f events/s%s\n", "appends committed", append_rate,
              "appended and delivered", overall, all ? "" : "   (NOT all delivered)");
  std::printf("%-34s p50 %.0f ms, p99 %.0f ms (ms resolution)\n", "commit -> delivered latency",
              bench::percentile(copy, 50), bench::percentile(copy, 99));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_store POSTGRES_URL AMQP_URL [--quick]\n");
    return 2;
  }
  g_pg = argv[1];
  g_amqp = argv[2];
  g_quick = argc > 3 && std::string(argv[3]) == "--quick";
  log::init(
      {.service = "bench", .instance = "", .level = log::Level::warn, .json = true, .file = ""});
  std::printf("Switchboard event store benchmark%s\n", g_quick ? " (quick)" : "");
  section_appends();
  section_publish();
  section_end_to_end();
  return 0;
}

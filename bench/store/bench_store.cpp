// Event store benchmark, every figure beside a baseline measured in the same
// run on the same servers:
//   1. committed appends: the single writer (group commit) at 1, 10 and 100
//      events per append with 1, 8 and 64 concurrent writers, beside plain
//      multi-row INSERTs into a table with the same indexes, one transaction
//      per "append", by the same number of connections;
//   2. publishing: the store's ordered, confirmed publisher draining stored
//      events to sb.events, beside plain rabbitmq-c confirmed publishing of
//      the same bodies with the same window (3 alternating rounds, medians);
//      for information also the publisher with page prefetch, and plain
//      rabbitmq-c sending the store's exact message properties too
//      (message_id, type, user_id, headers position and tenant);
//   3. end to end: appends and publishing together; latency from commit
//      (recorded_at) to delivery to a consumer, p50/p99 — with committed
//      events handed to the publisher in memory (as the store runs) and, for
//      comparison, read back from PostgreSQL; unpaced and paced.
// Usage: bench_store POSTGRES_URL AMQP_URL [--quick] [--only appends|publish|e2e] [--epa N]
//        (scripts/bench.sh store [options]); --epa limits section 1 to N events per append.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <amqp.h>

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
std::string g_only;  // empty: every section
int g_epa = 0;       // 0: 1, 10 and 100 events per append

pg::ConnectOptions db_options(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

// A fresh database with the store's schema.
std::string fresh_db(const std::string& name) {
  pg::Connection admin(db_options(g_pg));
  admin.exec(sb::pg::Sql::trusted("DROP DATABASE IF EXISTS " + sb::pg::quote_identifier(name)));
  admin.exec(sb::pg::Sql::trusted("CREATE DATABASE " + sb::pg::quote_identifier(name)));
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
    tx.exec(sb::pg::Sql::trusted(sql), params);
    tx.commit();
    return epa;
  });
}

void section_appends() {
  std::printf("\n1. Committed appends (events/s)\n");
  std::printf("%-8s %-8s %14s %14s %8s\n", "ev/app", "writers", "store", "raw INSERT", "ratio");
  for (int epa : {1, 10, 100}) {
    if (g_epa != 0 && epa != g_epa) continue;
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

// What the store sends besides the body (docs/protocol.md §4): message_id,
// type, user_id (its broker user) and the headers position and tenant
// (traceparent only when an event carried one; these do not).
struct RawProps {
  std::string id;
  std::string tenant;
  std::int64_t position = 0;
};

// The broker user in an amqp:// URL (RabbitMQ checks user_id against it).
std::string url_user(const std::string& url) {
  const auto scheme = url.find("://");
  const auto from = scheme == std::string::npos ? 0 : scheme + 3;
  const auto at = url.find('@', from);
  if (at == std::string::npos) return "guest";
  const auto colon = url.find(':', from);
  return url.substr(from, (colon != std::string::npos && colon < at ? colon : at) - from);
}

// The store's exact properties for raw_publish_confirmed: shows what they
// cost the broker, apart from the client.
bench::RawProperties store_properties(const std::vector<std::string>& keys,
                                      const std::vector<RawProps>& props, const std::string& user) {
  auto entries = std::make_shared<std::array<amqp_table_entry_t, 2>>();
  return [&keys, &props, entries, user](std::size_t i, amqp_basic_properties_t& p) {
    auto bytes = [](const std::string& v) {
      return amqp_bytes_t{v.size(), const_cast<char*>(v.data())};
    };
    const auto& pr = props[i];
    auto& e = *entries;
    e[0].key = amqp_cstring_bytes("position");
    e[0].value.kind = AMQP_FIELD_KIND_I64;
    e[0].value.value.i64 = pr.position;
    e[1].key = amqp_cstring_bytes("tenant");
    e[1].value.kind = AMQP_FIELD_KIND_UTF8;
    e[1].value.value.bytes = bytes(pr.tenant);
    p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_USER_ID_FLAG |
                AMQP_BASIC_HEADERS_FLAG;
    p.message_id = bytes(pr.id);
    p.type = bytes(keys[i]);
    p.user_id = bytes(user);
    p.headers.num_entries = 2;
    p.headers.entries = e.data();
  };
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Rounds alternate the publishers, so that load from elsewhere on the box
// falls on all of them; ratios are of the medians.
void section_publish() {
  const std::int64_t n = g_quick ? 10000 : 50000;
  auto url = fresh_db("bench_store_publish");
  store_appends(url, 100, 8, n);  // n events stored, none published yet
  bench::raw_bind_queue(g_amqp, "bench.sink", "sb.events", "#");
  const std::string user = url_user(g_amqp);

  // The same envelopes, for plain rabbitmq-c with the same window.
  std::vector<std::string> keys;
  std::vector<std::string> bodies;
  std::vector<RawProps> props;
  {
    pg::Connection c(db_options(url));
    auto rows = c.exec(
        "SELECT type, json_build_object('id', id, 'type', type, 'schema', schema_version, "
        "'stream', stream, 'version', version, 'position', position, 'tenant', tenant, "
        "'occurred_at', occurred_at, 'recorded_at', recorded_at, 'correlation_id', correlation_id, "
        "'data', data, 'meta', meta)::text, id::text, tenant, position "
        "FROM events ORDER BY position");
    for (const auto& r : rows) {
      keys.push_back(r[0].get<std::string>());
      bodies.push_back(r[1].get<std::string>());
      props.push_back({r[2].get<std::string>(), r[3].get<std::string>(), r[4].get<std::int64_t>()});
    }
  }

  auto store_run = [&](bool prefetch) {
    // A fresh checkpoint: every round publishes all n stored events.
    {
      pg::Connection c(db_options(url));
      c.exec("UPDATE store_positions SET position = 0 WHERE name = 'published'");
    }
    auto o = publisher_options(url);
    o.prefetch = prefetch;
    store::EventPublisher publisher(o);
    publisher.start();
    auto t0 = Clock::now();
    publisher.on_active(n);
    if (!wait_for([&] { return publisher.published() >= n; }, std::chrono::seconds(120))) {
      throw std::runtime_error("store publisher did not finish");
    }
    double rate = static_cast<double>(n) / seconds_since(t0);
    publisher.stop(Clock::now());
    bench::raw_purge_queue(g_amqp, "bench.sink");
    return rate;
  };
  auto raw_run = [&](bool with_props) {
    auto t0 = Clock::now();
    bench::raw_publish_confirmed(g_amqp, "sb.events", keys, bodies, 2048,
                                 with_props ? store_properties(keys, props, user) : nullptr);
    double rate = static_cast<double>(n) / seconds_since(t0);
    bench::raw_purge_queue(g_amqp, "bench.sink");
    return rate;
  };

  const int rounds = g_quick ? 1 : 3;
  std::vector<double> store_rates, store_pf_rates, raw_rates, raw_props_rates;
  std::printf("\n2. Publishing stored events to sb.events (events/s, %lld events, window 2048)\n",
              static_cast<long long>(n));
  std::printf("%-7s %12s %14s %12s %14s\n", "round", "store", "(prefetch on)", "plain",
              "(+properties)");
  for (int r = 0; r < rounds; ++r) {
    store_rates.push_back(store_run(false));
    raw_rates.push_back(raw_run(false));
    store_pf_rates.push_back(store_run(true));
    raw_props_rates.push_back(raw_run(true));
    std::printf("%-7d %12.0f %14.0f %12.0f %14.0f\n", r + 1, store_rates.back(),
                store_pf_rates.back(), raw_rates.back(), raw_props_rates.back());
    std::fflush(stdout);
  }
  const double s = median(store_rates);
  const double raw = median(raw_rates);
  std::printf("%-36s %12.0f\n%-36s %12.0f\n%-36s %12.2f   (goal >= 0.8)\n",
              "store publisher (median)", s, "plain rabbitmq-c, confirms (median)", raw, "ratio",
              s / raw);
  std::printf("%-36s %12.2f   (information)\n", "  store with prefetch on / plain",
              median(store_pf_rates) / raw);
  std::printf("%-36s %12.2f   (information: plain + the store's exact properties)\n",
              "  store / plain with store's props", s / median(raw_props_rates));
  std::fflush(stdout);
}

struct EndToEnd {
  double append_rate = 0;
  double overall = 0;
  double p50 = 0;
  double p99 = 0;
  bool all = false;
};

// handoff: wired as the store wires them (committed events handed over in
// memory); otherwise the publisher only learns the head and reads every
// event back from PostgreSQL (how it worked before the hand-off).
// rate: events/s the writers offer together (paced), 0 for as fast as they can.
EndToEnd end_to_end_run(bool handoff, int rate) {
  const std::int64_t n = (g_quick ? 10000 : 50000) / (rate > 0 ? 2 : 1);
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
  store::CommitListener listener;
  listener.on_active = [&](std::int64_t h) { publisher.on_active(h); };
  listener.on_standby = [&] { publisher.on_standby(); };
  if (handoff) {
    listener.on_commit_batch = [&](store::EventPublisher::Batch b, std::int64_t h) {
      publisher.on_commit(std::move(b), h);
    };
  } else {
    listener.on_commit = [&](const auto&, std::int64_t h) { publisher.on_commit(h); };
  }
  store::Writer writer(wo, listener);
  writer.start();
  wait_for([&] { return writer.active(); }, std::chrono::seconds(10));
  auto t0 = Clock::now();
  EndToEnd out;
  // Paced: writer w's append k is due at t0 + (k + w/8) * 8 * 10 / rate.
  const auto interval =
      rate > 0 ? std::chrono::duration<double>(80.0 / rate) : std::chrono::duration<double>(0);
  out.append_rate = run_threads(8, n, [&](int w, std::int64_t k) -> std::int64_t {
    if (rate > 0) {
      std::this_thread::sleep_until(
          t0 + std::chrono::duration_cast<Clock::duration>(
                   interval * (static_cast<double>(k) + static_cast<double>(w) / 8.0)));
    }
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
  out.all = wait_for(
      [&] {
        std::lock_guard lock(mutex);
        return static_cast<std::int64_t>(latencies_ms.size()) >= n;
      },
      std::chrono::seconds(120));
  out.overall = static_cast<double>(n) / seconds_since(t0);
  std::vector<double> copy;
  {
    std::lock_guard lock(mutex);
    copy = latencies_ms;
  }
  out.p50 = bench::percentile(copy, 50);
  out.p99 = bench::percentile(copy, 99);
  writer.stop(Clock::now());
  publisher.stop(Clock::now());
  return out;
}

void section_end_to_end() {
  std::printf("\n3. End to end: 8 writers x 10 events/append, store publishing, one consumer\n");
  std::printf("   (alternating: committed events handed over in memory, as the store runs, and\n");
  std::printf("   read back from PostgreSQL, as before the hand-off)\n");
  std::printf("%-22s %14s %14s %16s\n", "publisher gets", "committed/s", "delivered/s",
              "commit->delivered");
  const int rounds = g_quick ? 1 : 2;
  for (int rate : {0, 3000}) {
    if (rate == 0) {
      std::printf("as fast as the writers go (the broker's backlog is in the latency):\n");
    } else {
      std::printf("paced: the writers offer %d events/s together:\n", rate);
    }
    for (int r = 0; r < rounds; ++r) {
      for (bool handoff : {true, false}) {
        auto e = end_to_end_run(handoff, rate);
        std::printf("%-22s %14.0f %14.0f   p50 %4.0f ms, p99 %4.0f ms%s\n",
                    handoff ? "events in memory" : "head only (read back)", e.append_rate,
                    e.overall, e.p50, e.p99, e.all ? "" : "   (NOT all delivered)");
        std::fflush(stdout);
      }
    }
  }
  std::printf("(latency: recorded_at to the consumer's handler, ms resolution)\n");
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: bench_store POSTGRES_URL AMQP_URL [--quick] [--only appends|publish|e2e] "
      "[--epa 1|10|100]\n";
  if (argc < 3) {
    std::fprintf(stderr, "%s", usage);
    return 2;
  }
  g_pg = argv[1];
  g_amqp = argv[2];
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      g_quick = true;
    } else if (a == "--only" && i + 1 < argc) {
      g_only = argv[++i];
    } else if (a == "--epa" && i + 1 < argc) {
      g_epa = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  if (!g_only.empty() && g_only != "appends" && g_only != "publish" && g_only != "e2e") {
    std::fprintf(stderr, "%s", usage);
    return 2;
  }
  log::init(
      {.service = "bench", .instance = "", .level = log::Level::warn, .json = true, .file = ""});
  std::printf("Switchboard event store benchmark%s\n", g_quick ? " (quick)" : "");
  if (g_only.empty() || g_only == "appends") section_appends();
  if (g_only.empty() || g_only == "publish") section_publish();
  if (g_only.empty() || g_only == "e2e") section_end_to_end();
  return 0;
}

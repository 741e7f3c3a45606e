// Registry capacity: how many instances can heartbeat every 2 s while the
// heartbeat-to-read-model latency stays under 1 s at p99 (goal >= 10,000).
//
// For each level N: N instances are registered (through the real single
// writer, folded by the registry's projection), then heartbeat every 2 s,
// spread evenly, on sb.signals; a sample of them is watched in
// registry_heartbeats: the latency of a heartbeat is the time from its
// publish until a poll (every 20 ms) sees a last_seen at or after it — the
// broker, the registry's consumer, its in-memory tracker and its batched
// flush, all included.
//
// Baseline, same run, same database: the raw write the registry must make —
// one multi-row UPDATE of last_seen every 500 ms for the rows that
// heartbeated in that window, on a table of N rows, no broker — with the
// same latency definition (heartbeat time, spread over the window, to commit).
//
// Usage: bench_registry POSTGRES_URL AMQP_URL [--quick] [--levels N,N,...]

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "switchboard/broker/broker.hpp"
#include "switchboard/events/platform_types.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/registry/registry.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"

using namespace sb;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

std::string g_pg;
std::string g_amqp;
bool g_quick = false;

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

pg::ConnectOptions db_options(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

std::string fresh_db(const std::string& name) {
  pg::Connection admin(db_options(g_pg));
  admin.exec(sb::pg::Sql::trusted("DROP DATABASE IF EXISTS " + sb::pg::quote_identifier(name)));
  admin.exec(sb::pg::Sql::trusted("CREATE DATABASE " + sb::pg::quote_identifier(name)));
  return g_pg.substr(0, g_pg.rfind('/') + 1) + name;
}

std::string instance_id(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "bench-%06d", i);
  return buf;
}

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
  std::size_t n = 0;
};
Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  p.n = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  p.p50 = v[v.size() / 2];
  p.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  p.max = v.back();
  return p;
}

// Appends registrations [from, to) through the single writer.
void register_instances(store::Writer& writer, int from, int to) {
  std::vector<std::future<store::AppendResult>> pending;
  for (int i = from; i < to; ++i) {
    registry::Registration r;
    r.name = "svc-" + std::to_string(i % 50);
    r.version = "1";
    r.instance_id = instance_id(i);
    r.endpoints = {{"GET", "/" + r.name + "/{id}", {}, true, std::nullopt}};
    // A long TTL: instances above the current level stay silent meanwhile.
    r.metadata = R"({"heartbeat_interval_ms":3600000})";
    events::NewEvent e{.id = events::new_event_id(),
                       .type = events::EventType(events::kServiceInstanceRegistered),
                       .schema_version = 1,
                       .data = events::Payload::parse(registry::to_json(r)),
                       .meta = events::Payload(),
                       .occurred_at = events::now_ms(),
                       .correlation_id = std::nullopt,
                       .causation_id = std::nullopt,
                       .actor = std::nullopt};
    auto p = std::make_shared<std::promise<store::AppendResult>>();
    pending.push_back(p->get_future());
    writer.append({events::StreamId(registry::instance_stream(r.instance_id)),
                   events::ExpectedVersion::any(),
                   events::TenantId(registry::kPlatformTenant),
                   {std::move(e)}},
                  [p](store::AppendResult res) { p->set_value(std::move(res)); });
    if (pending.size() >= 2000) {
      for (auto& f : pending) f.get();
      pending.clear();
    }
  }
  for (auto& f : pending) f.get();
}

struct LevelResult {
  int instances = 0;
  Percentiles latency;  // ms
  double sent_rate = 0;
  double received_rate = 0;
  std::uint64_t flushes = 0;
  double flush_rows = 0;  // per flush
};

LevelResult run_level(registry::Registry& reg, int n, std::chrono::seconds warmup,
                      std::chrono::seconds measure, const std::string& db_url) {
  broker::PublisherOptions po;
  po.connection.url = g_amqp;
  po.connection.name = "bench-heartbeats";
  po.max_in_flight = 8192;
  po.topology = broker::platform_topology();
  broker::Publisher pub(po);

  // Sample ~300 instances for latency.
  const int stride = std::max(1, n / 300);
  std::mutex mu;
  std::map<std::string, std::deque<std::int64_t>> pending;  // sent times (wall ms)
  std::vector<double> latencies;
  std::atomic<bool> measuring{false};
  std::atomic<bool> running{true};

  std::vector<std::string> bodies;
  bodies.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    bodies.push_back(registry::to_json(registry::Heartbeat{"svc-" + std::to_string(i % 50),
                                                           instance_id(i), "1", 0, std::nullopt}));
  }
  std::atomic<std::uint64_t> sent{0};
  std::thread sender([&] {
    // Instance i beats at (i / n) * 2 s into each 2 s cycle.
    const auto start = Clock::now();
    std::int64_t done = 0;  // heartbeats sent so far (over all cycles)
    while (running) {
      const auto elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const auto due = static_cast<std::int64_t>(elapsed / 2.0 * n);
      for (; done < due && running; ++done) {
        const int i = static_cast<int>(done % n);
        broker::Message m;
        m.body = bodies[static_cast<std::size_t>(i)];
        m.persistent = false;
        broker::PublishOptions o;
        o.exchange = broker::kSignalsExchange;
        o.routing_key = std::string(registry::kHeartbeatKey);
        o.deadline = Clock::now() + 2s;
        if (i % stride == 0 && measuring) {
          std::lock_guard lock(mu);
          pending[instance_id(i)].push_back(wall_ms());
        }
        pub.publish(std::move(m), o, [](const broker::PublishOutcome&) {});
        ++sent;
      }
      std::this_thread::sleep_for(5ms);
    }
  });

  std::vector<std::string> sample;
  for (int i = 0; i < n; i += stride) sample.push_back(instance_id(i));
  const auto sample_array = events::pg_text_array(sample);
  std::thread poller([&] {
    pg::Connection c(db_options(db_url));
    while (running) {
      auto rows = c.exec(
          "SELECT instance_id, (extract(epoch FROM last_seen) * 1000)::bigint FROM "
          "registry_heartbeats WHERE instance_id = ANY($1::text[])",
          {sample_array});
      const auto now = wall_ms();
      std::lock_guard lock(mu);
      for (const auto& row : rows) {
        auto it = pending.find(row[0].get<std::string>());
        if (it == pending.end()) continue;
        const auto seen = row[1].get<std::int64_t>();
        while (!it->second.empty() && it->second.front() <= seen) {
          latencies.push_back(static_cast<double>(now - it->second.front()));
          it->second.pop_front();
        }
      }
      std::this_thread::sleep_for(20ms);
    }
  });

  std::this_thread::sleep_for(warmup);
  const auto before = reg.stats();
  const auto sent_before = sent.load();
  measuring = true;
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(measure);
  measuring = false;
  const auto secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto after = reg.stats();
  const auto sent_after = sent.load();
  std::this_thread::sleep_for(2500ms);  // let the last sampled ones land
  running = false;
  sender.join();
  poller.join();

  LevelResult r;
  r.instances = n;
  {
    std::lock_guard lock(mu);
    // Heartbeats never seen count as (at least) the whole wait.
    for (const auto& [id, q] : pending) {
      for (auto t : q) latencies.push_back(static_cast<double>(wall_ms() - t));
    }
    r.latency = percentiles(latencies);
  }
  r.sent_rate = static_cast<double>(sent_after - sent_before) / secs;
  r.received_rate = static_cast<double>(after.heartbeats - before.heartbeats) / secs;
  r.flushes = after.flushes - before.flushes;
  r.flush_rows = r.flushes > 0 ? static_cast<double>(after.flushed_rows - before.flushed_rows) /
                                     static_cast<double>(r.flushes)
                               : 0;
  return r;
}

// The raw write: every 500 ms one multi-row UPDATE of the rows that beat in
// the window, on a table of n rows; latency = commit end - heartbeat time.
Percentiles baseline(const std::string& db_url, int n, std::chrono::seconds measure) {
  pg::Connection c(db_options(db_url));
  c.exec("DROP TABLE IF EXISTS baseline_heartbeats");
  c.exec(
      "CREATE TABLE baseline_heartbeats (instance_id text PRIMARY KEY, last_seen timestamptz "
      "NOT NULL)");
  c.exec(
      "INSERT INTO baseline_heartbeats SELECT 'bench-' || lpad(g::text, 6, '0'), now() FROM "
      "generate_series(0, $1 - 1) g",
      {n});
  std::vector<double> lat;
  const auto start = Clock::now();
  int next = 0;
  auto window_start = Clock::now();
  while (Clock::now() - start < measure) {
    std::this_thread::sleep_until(window_start + 500ms);
    const auto window_end = Clock::now();
    // The instances that beat in this window, at times spread over it.
    const int rows = n / 4;
    std::vector<std::string> ids;
    std::vector<Clock::time_point> times;
    std::string times_text = "{";
    for (int k = 0; k < rows; ++k, next = (next + 1) % n) {
      ids.push_back(instance_id(next));
      const auto t = window_start + (window_end - window_start) * k / std::max(1, rows);
      times.push_back(t);
      if (k > 0) times_text += ',';
      times_text += std::to_string(wall_ms());
    }
    times_text += "}";
    {
      auto tx = c.begin();
      tx.exec(
          "UPDATE baseline_heartbeats b SET last_seen = timestamptz 'epoch' + u.ms * interval '1 "
          "millisecond' FROM unnest($1::text[], $2::bigint[]) AS u(i, ms) WHERE b.instance_id = "
          "u.i",
          {events::pg_text_array(ids), times_text});
      tx.commit();
    }
    const auto done = Clock::now();
    for (auto t : times) lat.push_back(std::chrono::duration<double, std::milli>(done - t).count());
    window_start = window_end;
  }
  return percentiles(lat);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: bench_registry POSTGRES_URL AMQP_URL [--quick] [--levels N,...]\n");
    return 2;
  }
  g_pg = argv[1];
  g_amqp = argv[2];
  std::vector<int> levels{2500, 5000, 10000, 15000, 20000};
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      g_quick = true;
      levels = {1000, 2500, 5000};
    } else if (a == "--levels" && i + 1 < argc) {
      levels.clear();
      std::stringstream ss(argv[++i]);
      for (std::string item; std::getline(ss, item, ',');) levels.push_back(std::stoi(item));
    }
  }
  log::Options lo;
  lo.level = log::Level::warn;
  log::init(lo);
  const auto warmup = g_quick ? 4s : 6s;
  const auto measure = g_quick ? 6s : 10s;

  const auto db = fresh_db("bench_registry");
  pg::migrate(db_options(db), pg::store_migrations());
  store::WriterOptions wo;
  wo.connection = db_options(db);
  store::Writer writer(wo, {});
  writer.start();
  while (!writer.active()) std::this_thread::sleep_for(50ms);

  registry::RegistryOptions ro;
  ro.database.url = db;
  ro.broker.url = g_amqp;
  ro.broker.name = "bench-registry";
  ro.replica = "bench";
  registry::Registry reg(ro);
  reg.start();

  std::printf(
      "registry capacity: instances heartbeating every 2 s; latency = heartbeat publish "
      "-> last_seen visible in PostgreSQL (ms)\n");
  std::printf("%8s | %9s %9s | %8s %8s %8s | %8s %8s | %s\n", "inst", "sent/s", "recv/s", "p50",
              "p99", "max", "flush/s", "rows/fl", "baseline raw UPDATE p50 / p99 / max");
  int registered = 0;
  int capacity = 0;
  bool capacity_open = true;
  for (int n : levels) {
    const auto t0 = Clock::now();
    register_instances(writer, registered, n);
    registered = n;
    while (reg.stats().live_instances < static_cast<std::size_t>(n)) {
      std::this_thread::sleep_for(100ms);
      if (Clock::now() - t0 > 600s) {
        std::fprintf(stderr, "read model did not reach %d instances\n", n);
        return 1;
      }
    }
    const auto fold_s = std::chrono::duration<double>(Clock::now() - t0).count();
    auto r = run_level(reg, n, warmup, measure, db);
    auto b = baseline(db, n, measure);
    std::printf(
        "%8d | %9.0f %9.0f | %8.0f %8.0f %8.0f | %8.1f %8.0f | %.0f / %.0f / %.0f"
        "   (registered+folded in %.1f s, %zu samples)\n",
        n, r.sent_rate, r.received_rate, r.latency.p50, r.latency.p99, r.latency.max,
        static_cast<double>(r.flushes) / static_cast<double>(measure.count()), r.flush_rows, b.p50,
        b.p99, b.max, fold_s, r.latency.n);
    std::fflush(stdout);
    // Capacity: the largest level below which every level kept p99 < 1 s.
    if (r.latency.p99 < 1000 && r.received_rate > 0.9 * r.sent_rate) {
      if (capacity_open) capacity = n;
    } else {
      capacity_open = false;
    }
  }
  std::printf(
      "capacity (largest level up to which every level kept p99 < 1 s): %d instances "
      "(goal >= 10000)\n",
      capacity);
  reg.stop(Clock::now() + 5s);
  writer.stop(Clock::now() + 5s);
  return 0;
}

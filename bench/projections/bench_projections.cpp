// Projection benchmark, every figure beside a baseline measured in the same
// run on the same server:
//   projection  a ProjectionRunner catching up from position 0 with a simple
//               projection: one upsert of one row per event into one table;
//   raw         the SAME upsert statements executed directly, one
//               transaction per batch of page-size events (the floor of any
//               engine that commits per page);
//   raw+read    raw, plus reading each page from the events table by
//               position and writing a checkpoint row in the transaction
//               (what a checkpointed projection does at the least).
// Each figure is the median of --repeat runs (default 3), taken in turns so
// that background load hits all of them alike.
// Usage: bench_projections POSTGRES_URL [--quick] [--events N] [--repeat N]
//        (scripts/bench.sh projections)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "switchboard/events/reader.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/projections/runner.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"

using namespace sb;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kStreams = 1000;
constexpr const char* kType = "bench.order.placed";

pg::ConnectOptions db_options(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string fresh_db(const std::string& server_url, const std::string& name) {
  pg::Connection admin(db_options(server_url));
  admin.exec(sb::pg::Sql::trusted("DROP DATABASE IF EXISTS " + sb::pg::quote_identifier(name)));
  admin.exec(sb::pg::Sql::trusted("CREATE DATABASE " + sb::pg::quote_identifier(name)));
  auto url = server_url.substr(0, server_url.rfind('/') + 1) + name;
  pg::migrate(db_options(url), pg::store_migrations());
  pg::migrate(db_options(url), pg::subscriptions_migrations());
  pg::migrate(db_options(url), pg::projections_migrations());
  return url;
}

void append_events(const std::string& url, std::int64_t total) {
  store::WriterOptions wo;
  wo.connection = db_options(url);
  store::Writer writer(wo, {});
  writer.start();
  while (!writer.active()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto payload = events::Payload::parse(R"({"order":"o-1","sku":"SKU-12345","qty":3})");
  std::atomic<std::int64_t> done{0};
  std::atomic<int> failed{0};
  constexpr int kPerAppend = 100;
  const std::int64_t appends = total / kPerAppend;
  for (std::int64_t a = 0; a < appends; ++a) {
    while (a - done.load() >= 64) std::this_thread::sleep_for(std::chrono::microseconds(200));
    store::AppendRequest r{events::StreamId("order-" + std::to_string(a % kStreams)),
                           events::ExpectedVersion::any(),
                           events::TenantId("bench"),
                           {},
                           {}};
    for (int i = 0; i < kPerAppend; ++i) {
      r.events.push_back(events::NewEvent{.id = events::new_event_id(),
                                          .type = events::EventType(kType),
                                          .schema_version = 1,
                                          .data = payload,
                                          .meta = events::Payload(),
                                          .occurred_at = events::now_ms(),
                                          .correlation_id = std::nullopt,
                                          .causation_id = std::nullopt,
                                          .actor = std::nullopt});
    }
    writer.append(std::move(r), [&](store::AppendResult res) {
      if (res.kind != store::AppendResult::Kind::appended) ++failed;
      ++done;
    });
  }
  while (done.load() < appends) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  writer.stop(Clock::now() + std::chrono::seconds(5));
  if (failed.load() > 0) throw std::runtime_error("appends failed");
}

const char* kCreate =
    "CREATE TABLE {streams} (stream text PRIMARY KEY, events bigint NOT NULL, last_position "
    "bigint NOT NULL)";
std::string upsert_sql(const std::string& table) {
  return "INSERT INTO " + table +
         " AS s (stream, events, last_position) VALUES ($1, 1, $2) ON CONFLICT (stream) DO "
         "UPDATE SET events = s.events + 1, last_position = excluded.last_position";
}

std::shared_ptr<projections::Projection> simple(const std::string& name) {
  return projections::ProjectionBuilder(name)
      .table("streams")
      .schema(kCreate)
      .on(kType,
          [](pg::Transaction& tx, const projections::Tables& t, const events::Event& e) {
            tx.exec(sb::pg::Sql::trusted(upsert_sql(t("streams"))),
                    {e.stream.value(), e.position.value()});
            return events::HandleResult::handled;
          })
      .build();
}

double run_projection(const std::string& url, const std::string& name, std::size_t page,
                      int partitions, std::int64_t head) {
  pg::PoolOptions po;
  po.connection = db_options(url);
  po.max_size = 8;
  projections::RunnerOptions o;
  o.store = std::make_shared<pg::Pool>(po);
  o.page_size = page;
  o.partitions = partitions;
  o.poll_interval = std::chrono::milliseconds(100);
  projections::ProjectionRunner runner(simple(name), o);
  const auto t0 = Clock::now();
  runner.start();
  if (!runner.wait_for_position(events::Position(head), Clock::now() + std::chrono::minutes(30))) {
    throw std::runtime_error("projection did not catch up");
  }
  return static_cast<double>(head) / seconds_since(t0);
}

struct Row {
  std::string stream;
  std::int64_t position;
};

std::vector<Row> load_rows(const std::string& url) {
  pg::Connection c(db_options(url));
  std::vector<Row> rows;
  for (const auto& r : c.exec("SELECT stream, position FROM events ORDER BY position")) {
    rows.push_back({r[0].get<std::string>(), r[1].get<std::int64_t>()});
  }
  return rows;
}

void make_table(pg::Connection& c, const std::string& table) {
  c.exec(sb::pg::Sql::trusted("DROP TABLE IF EXISTS " + table));
  c.exec(
      sb::pg::Sql::trusted(std::string(kCreate).replace(std::strlen("CREATE TABLE "), 9, table)));
}

// The same statements, batches of `page`, one transaction each.
double raw(const std::string& url, const std::vector<Row>& rows, std::size_t page,
           const std::string& table) {
  pg::Connection c(db_options(url));
  make_table(c, table);
  const auto sql = upsert_sql(table);
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < rows.size(); i += page) {
    auto tx = c.begin();
    for (std::size_t j = i; j < std::min(rows.size(), i + page); ++j) {
      tx.exec(sb::pg::Sql::trusted(sql), {rows[j].stream, rows[j].position});
    }
    tx.commit();
  }
  return static_cast<double>(rows.size()) / seconds_since(t0);
}

// Raw plus reading each page by position (filtered by type, REPEATABLE READ
// with the head, as a subscription does) and a checkpoint row per commit.
double raw_with_read(const std::string& url, std::size_t page, const std::string& table) {
  pg::Connection c(db_options(url));
  make_table(c, table);
  c.exec("CREATE TABLE IF NOT EXISTS raw_checkpoint (name text PRIMARY KEY, position bigint)");
  c.exec("INSERT INTO raw_checkpoint VALUES ($1, 0) ON CONFLICT (name) DO UPDATE SET position = 0",
         {table});
  pg::PoolOptions po;
  po.connection = db_options(url);
  po.max_size = 2;
  pg::Pool pool(po);
  events::EventReader reader(pool);
  events::Filter filter;
  filter.types = {kType};
  const auto sql = upsert_sql(table);
  events::Position cp(0);
  std::int64_t n = 0;
  const auto t0 = Clock::now();
  while (true) {
    auto p = reader.read_all(cp, filter, page);
    if (p.events.empty() && p.at_head()) break;
    auto tx = c.begin();
    tx.exec("SELECT position FROM raw_checkpoint WHERE name = $1 FOR UPDATE", {table});
    for (const auto& e : p.events)
      tx.exec(sb::pg::Sql::trusted(sql), {e.stream.value(), e.position.value()});
    tx.exec("UPDATE raw_checkpoint SET position = $2 WHERE name = $1",
            {table, p.scanned_to.value()});
    tx.commit();
    n += static_cast<std::int64_t>(p.events.size());
    cp = p.scanned_to;
  }
  return static_cast<double>(n) / seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_projections POSTGRES_URL [--quick] [--events N]\n");
    return 2;
  }
  const std::string server = argv[1];
  std::int64_t total = 50000;
  int repeat = 3;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      total = 10000;
      repeat = 1;
    }
    if (std::strcmp(argv[i], "--events") == 0 && i + 1 < argc) total = std::atoll(argv[++i]);
    if (std::strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) repeat = std::atoi(argv[++i]);
  }
  repeat = std::max(repeat, 1);
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  log::Options lo;
  lo.level = log::Level::warn;
  log::init(lo);
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f) != nullptr) std::printf("load average before: %s", buf);
    std::fclose(f);
  }
  try {
    const auto url = fresh_db(server, "sb_bench_projections");
    std::printf("appending %lld events (%d streams, 100 per append)...\n",
                static_cast<long long>(total), kStreams);
    append_events(url, total);
    {
      // Steady state has statistics; right after a bulk load the planner
      // would have none and the first reader would pay for it.
      pg::Connection c(db_options(url));
      c.exec("VACUUM ANALYZE events");
    }
    const auto rows = load_rows(url);
    const auto head = rows.empty() ? 0 : rows.back().position;
    std::printf("\nsimple projection: one upsert of one row per event, %d rows; median of %d\n\n",
                kStreams, repeat);
    std::printf("| what                          | page | partitions | events/s | vs raw |\n");
    std::printf("|-------------------------------|-----:|-----------:|---------:|-------:|\n");
    int k = 0;
    for (std::size_t page : {100UL, 1000UL}) {
      std::vector<double> r;
      std::vector<double> rr;
      std::vector<double> p1;
      std::vector<double> p2;
      for (int i = 0; i < repeat; ++i) {
        r.push_back(raw(url, rows, page, "raw_streams"));
        rr.push_back(raw_with_read(url, page, "rawread_streams"));
        p1.push_back(run_projection(url, "bench" + std::to_string(k++), page, 1, head));
        p2.push_back(run_projection(url, "bench" + std::to_string(k++), page, 2, head));
      }
      const double base = median(r);
      std::printf("| raw statements (baseline)     | %4zu | %10s | %8.0f | %5.2fx |\n", page, "-",
                  base, 1.0);
      std::printf("| raw + read page + checkpoint  | %4zu | %10s | %8.0f | %5.2fx |\n", page, "-",
                  median(rr), median(rr) / base);
      std::printf("| ProjectionRunner              | %4zu | %10d | %8.0f | %5.2fx |\n", page, 1,
                  median(p1), median(p1) / base);
      std::printf("| ProjectionRunner              | %4zu | %10d | %8.0f | %5.2fx |\n", page, 2,
                  median(p2), median(p2) / base);
      std::fflush(stdout);
    }
    std::printf("\nload average after: ");
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      char buf[64] = {};
      if (std::fgets(buf, sizeof buf, f) != nullptr) std::printf("%s", buf);
      std::fclose(f);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_projections: %s\n", e.what());
    return 1;
  }
  return 0;
}

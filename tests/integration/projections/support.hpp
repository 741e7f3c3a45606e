#pragma once
// Helpers of the projections integration tests: a fresh database with the
// store's tables and the real single writer, pools, deposits, runner options
// and a dump of a read model for comparisons.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "ledger.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/projections/runner.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::projtest {

using namespace std::chrono_literals;
namespace tst = sb::testing;
using Clock = std::chrono::steady_clock;

inline pg::ConnectOptions connect(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

inline std::shared_ptr<pg::Pool> make_pool(const std::string& url, std::size_t size = 16) {
  pg::PoolOptions o;
  o.connection = connect(url);
  o.max_size = size;
  return std::make_shared<pg::Pool>(o);
}

struct Db {
  std::string url = tst::fresh_database("proj");
  std::shared_ptr<pg::Pool> pool;
  Db() {
    pg::migrate(connect(url), pg::store_migrations());
    // The runner applies these itself; done here too so tests can look at
    // the tables before any runner started.
    pg::migrate(connect(url), pg::subscriptions_migrations());
    pg::migrate(connect(url), pg::projections_migrations());
    pool = make_pool(url);
  }
  std::int64_t scalar(const pg::Sql& sql, const pg::Params& params = {}) const {
    pg::Connection c(connect(url));
    return c.exec(sql, params).one()[0].get<std::int64_t>();
  }
  bool exists(const std::string& relation) const {
    pg::Connection c(connect(url));
    return !c.exec("SELECT to_regclass($1)::text", {relation}).one()[0].is_null();
  }
  /// Every row of a relation as text, sorted: equal dumps, equal read models.
  std::vector<std::string> dump(const std::string& relation,
                                const std::string& columns = "*") const {
    pg::Connection c(connect(url));
    std::vector<std::string> out;
    for (const auto& r : c.exec(pg::Sql::trusted("SELECT t::text FROM (SELECT " + columns +
                                                 " FROM " + relation + ") t ORDER BY 1"))) {
      out.push_back(r[0].get<std::string>());
    }
    return out;
  }
};

inline events::NewEvent deposit(std::int64_t amount) {
  return events::NewEvent{
      .id = events::new_event_id(),
      .type = events::EventType("bank.account.deposited"),
      .schema_version = 1,
      .data = events::Payload::parse("{\"amount\":" + std::to_string(amount) + "}"),
      .meta = events::Payload(),
      .occurred_at = events::now_ms(),
      .correlation_id = std::nullopt,
      .causation_id = std::nullopt,
      .actor = std::nullopt};
}

inline events::NewEvent noise() {
  auto e = deposit(0);
  e.type = events::EventType("bank.noise.ticked");
  return e;
}

inline std::unique_ptr<store::Writer> start_writer(const std::string& url) {
  store::WriterOptions o;
  o.connection = connect(url);
  auto w = std::make_unique<store::Writer>(o, store::CommitListener{});
  w->start();
  EXPECT_TRUE(tst::wait_until([&] { return w->active(); }, 10s));
  return w;
}

/// Appends `batches` appends of `per_append` events (deposits, with one
/// noise event in every 10) over `streams` streams, many in flight at once.
/// Returns the head.
inline std::int64_t append_deposits(store::Writer& w, int batches, int per_append, int streams) {
  std::atomic<int> done{0};
  std::atomic<int> failed{0};
  std::atomic<std::int64_t> head{0};
  constexpr int kInFlight = 64;
  for (int b = 0; b < batches; ++b) {
    while (b - done.load() >= kInFlight) std::this_thread::sleep_for(1ms);
    std::vector<events::NewEvent> evs;
    for (int i = 0; i < per_append; ++i) {
      evs.push_back((b + i) % 10 == 9 ? noise() : deposit(1 + (b * 7 + i) % 13));
    }
    w.append(
        {events::StreamId("acct-" + std::to_string(b % streams)), events::ExpectedVersion::any(),
         events::TenantId("acme"), std::move(evs)},
        [&](store::AppendResult r) {
          if (r.kind != store::AppendResult::Kind::appended) {
            ++failed;
          } else {
            std::int64_t h = head.load();
            while (r.positions.back() > h && !head.compare_exchange_weak(h, r.positions.back())) {
            }
          }
          ++done;
        });
  }
  EXPECT_TRUE(tst::wait_until([&] { return done.load() == batches; }, 300s));
  EXPECT_EQ(failed.load(), 0);
  return head.load();
}

inline projections::RunnerOptions runner_options(const Db& db, int partitions = 1) {
  projections::RunnerOptions o;
  o.store = db.pool;
  o.partitions = partitions;
  o.page_size = 100;
  o.poll_interval = 50ms;
  o.retry.initial = 10ms;
  o.retry.max = 50ms;
  o.retry.attempts = 3;
  o.swap_lock_timeout = 500ms;
  return o;
}

}  // namespace sb::projtest

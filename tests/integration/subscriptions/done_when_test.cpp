// The store issue's done-when, at library level: a checkpointed subscription
// with a type filter, started from 0 while several threads keep appending a
// mix of types through the real single writer, sees every matching event
// exactly once and in order — across a RabbitMQ restart (head signals are
// lost meanwhile; the poll covers), across a store restart (a standby writer
// takes over at the same head while appends continue) and across a restart
// of the subscription itself (a new instance resumes from the checkpoint).
#include <atomic>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "support.hpp"

namespace sb::subtest {
namespace {

TEST(DoneWhen, FilteredSubscriptionSeesEveryMatchingEventOnceInOrderAcrossRestarts) {
  Db db;
  const auto vhost = tst::fresh_vhost("subs");
  broker::PublisherOptions po;
  po.connection = amqp(vhost, "test.head");
  po.topology = broker::platform_topology();
  broker::Publisher head_pub(po);
  std::atomic<std::int64_t> committed_head{0};
  const store::CommitListener listener{
      .on_active = {}, .on_standby = {}, .on_commit = [&](const auto&, std::int64_t head) {
        committed_head = head;
        events::publish_head_signal(head_pub, events::Position(head), 200ms);
      }};
  // The writer in use; replaced when the store restarts (guarded by writer_mutex).
  std::mutex writer_mutex;
  std::shared_ptr<store::Writer> writer = start_writer(db.url, listener);
  auto current_writer = [&] {
    std::lock_guard lock(writer_mutex);
    return writer;
  };

  auto signals = std::make_shared<events::HeadSignals>(amqp(vhost, "test.sig"), "donewhen");
  signals->start();

  auto make_sub = [&](const std::string& who) {
    auto o = sub_options(db, "orders");
    o.filter.types = {"test.order.*"};
    o.poll_interval = 1000ms;  // the default: signals do the waking
    o.signals = signals;
    o.page_size = 200;
    return std::make_unique<events::CheckpointedSubscription>(o,
                                                              events::make_handler(recorder(who)));
  };

  // Writers append until told to stop (after both restarts), so commits and
  // head signals keep flowing through every phase of the test.
  constexpr int kThreads = 4;
  std::atomic<bool> writing{true};
  std::atomic<std::int64_t> appends{0};
  std::vector<std::thread> writers;
  struct Joiner {
    std::atomic<bool>& flag;
    std::vector<std::thread>& threads;
    ~Joiner() {
      flag = false;
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{writing, writers};
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u);
      const char* types[] = {"test.order.placed", "test.order.shipped", "test.noise.happened",
                             "test.noise.ticked"};
      while (writing) {
        std::vector<events::NewEvent> evs;
        const int n = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < n; ++k) evs.push_back(new_event(types[rng() % 4]));
        const auto stream = "order-" + std::to_string(t) + "-" + std::to_string(rng() % 25);
        // While the store restarts an append may be refused as unavailable
        // (never stored): try again on the writer that took over.
        for (int attempt = 0;; ++attempt) {
          std::promise<store::AppendResult> p;
          auto f = p.get_future();
          current_writer()->append({events::StreamId(stream), events::ExpectedVersion::any(),
                                    events::TenantId("acme"), evs},
                                   [&p](store::AppendResult r) { p.set_value(std::move(r)); });
          const auto r = f.get();
          if (r.kind == store::AppendResult::Kind::appended) break;
          ASSERT_EQ(r.kind, store::AppendResult::Kind::unavailable) << r.message;
          ASSERT_LT(attempt, 2000);
          std::this_thread::sleep_for(5ms);
        }
        ++appends;
      }
    });
  }

  auto sub = make_sub("first");
  sub->start();

  // A RabbitMQ restart while both writing and reading.
  ASSERT_TRUE(tst::wait_until([&] { return sub->status().position.value() > 3000; }, 120s));
  const auto before_restart = sub->status().position;
  std::printf("restarting rabbitmq at checkpoint %lld (head %lld)\n",
              static_cast<long long>(before_restart.value()),
              static_cast<long long>(committed_head.load()));
  tst::servers().restart("rabbitmq");
  ASSERT_TRUE(tst::wait_until(
      [&] { return sub->status().position.value() > before_restart.value() + 2000; }, 120s))
      << "the subscription must keep going while/after the broker restarts";
  // Signals come back once the broker is back (consumer re-declared its queue).
  const auto received = signals->received();
  ASSERT_TRUE(tst::wait_until([&] { return signals->received() > received + 5; }, 60s))
      << "head signals resume after the broker restart";

  // Restart the store: a standby writer waits on the lock, the active one
  // stops, the standby takes over at the same head while appends continue.
  {
    const auto before_store = sub->status().position;
    std::printf("restarting the store at checkpoint %lld\n",
                static_cast<long long>(before_store.value()));
    store::WriterOptions wo;
    wo.connection = connect(db.url);
    auto standby = std::make_shared<store::Writer>(wo, listener);
    standby->start();
    std::shared_ptr<store::Writer> old;
    {
      std::lock_guard lock(writer_mutex);
      old = writer;
      writer = standby;
    }
    old->stop(std::chrono::steady_clock::now() + 5s);
    old.reset();
    ASSERT_TRUE(tst::wait_until([&] { return standby->active(); }, 30s)) << "standby took over";
    ASSERT_TRUE(tst::wait_until(
        [&] { return sub->status().position.value() > before_store.value() + 2000; }, 120s))
        << "the subscription keeps going across the store restart";
  }

  // Restart the subscription itself: a new instance resumes from the checkpoint.
  sub->stop(std::chrono::steady_clock::now() + 5s);
  const auto stopped_at = db.scalar(
      "SELECT position FROM subscription_checkpoints WHERE name = 'orders' AND partition = 0");
  std::printf("subscription stopped at checkpoint %lld\n", static_cast<long long>(stopped_at));
  sub.reset();
  sub = make_sub("second");
  sub->start();

  // Let the new instance run live under load for a while, then stop writing.
  const auto resumed_from = sub->status().position;
  ASSERT_TRUE(tst::wait_until(
      [&] { return sub->status().position.value() > resumed_from.value() + 2000; }, 120s));
  writing = false;
  for (auto& w : writers) w.join();
  const auto head = events::Position(committed_head.load());
  ASSERT_TRUE(sub->wait_for_position(head, std::chrono::steady_clock::now() + 120s))
      << "checkpoint " << sub->status().position << " head " << head;
  EXPECT_TRUE(tst::wait_until(
      [&] { return sub->status().state == events::SubscriptionState::running; }, 10s));
  const auto status = sub->status();
  EXPECT_EQ(status.lag_events, 0);
  EXPECT_FALSE(status.last_error.has_value()) << *status.last_error;

  const auto matching = db.scalar("SELECT count(*) FROM events WHERE type LIKE 'test.order.%'");
  const auto total = db.scalar("SELECT count(*) FROM events");
  const auto seen = db.scalar("SELECT count(*) FROM seen");
  const auto distinct = db.scalar("SELECT count(DISTINCT position) FROM seen");
  const auto wrong_type = db.scalar("SELECT count(*) FROM seen WHERE type NOT LIKE 'test.order.%'");
  const auto missing = db.scalar(
      "SELECT count(*) FROM events e WHERE e.type LIKE 'test.order.%' AND NOT EXISTS "
      "(SELECT 1 FROM seen s WHERE s.position = e.position)");
  const auto out_of_order = db.scalar(
      "SELECT count(*) FROM (SELECT position < lag(position) OVER (ORDER BY seq) AS back FROM "
      "seen) x WHERE back");
  const auto by_second = db.scalar("SELECT count(*) FROM seen WHERE who = 'second'");
  std::printf(
      "events %lld, matching %lld, seen %lld (distinct %lld, by the restarted instance %lld)\n",
      static_cast<long long>(total), static_cast<long long>(matching), static_cast<long long>(seen),
      static_cast<long long>(distinct), static_cast<long long>(by_second));
  EXPECT_GT(total, matching) << "the mix must contain filtered-out types";
  EXPECT_EQ(seen, matching) << "every matching event exactly once";
  EXPECT_EQ(distinct, seen) << "no duplicates";
  EXPECT_EQ(missing, 0) << "no gaps";
  EXPECT_EQ(wrong_type, 0);
  EXPECT_EQ(out_of_order, 0) << "handled in position order";
  EXPECT_GT(by_second, 0) << "the restarted instance carried on";
  EXPECT_EQ(
      db.scalar("SELECT count(*) FROM seen WHERE who = 'second' AND position <= $1", {stopped_at}),
      0)
      << "the restarted instance resumed after the checkpoint, not from 0";
  sub->stop(std::chrono::steady_clock::now() + 5s);
  signals->stop(std::chrono::steady_clock::now() + 5s);
  current_writer()->stop(std::chrono::steady_clock::now() + 5s);
}

}  // namespace
}  // namespace sb::subtest

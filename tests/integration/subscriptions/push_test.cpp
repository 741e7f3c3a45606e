// Push subscriptions against real RabbitMQ and PostgreSQL: the bounded
// queue and its arguments, deduplication, replay bypassing deduplication and
// reaching one group only, overflow recorded and caught up from the store.
#include <atomic>
#include <fstream>
#include <sstream>

#include "support.hpp"
#include "switchboard/events/push.hpp"

namespace sb::subtest {
namespace {

struct Env {
  Db db;
  std::string vhost_url = tst::fresh_vhost("push");
  std::unique_ptr<store::Writer> writer = start_writer(db.url);
  std::unique_ptr<broker::Publisher> store_pub;  // plays the store's publisher
  Env() {
    broker::PublisherOptions po;
    po.connection = amqp(vhost_url, "test.store");
    po.topology = broker::platform_topology();
    store_pub = std::make_unique<broker::Publisher>(po);
    store_pub->declare(po.topology);
  }
  /// Appends `n` events of `type` and returns them as stored.
  std::vector<events::Event> store(const std::string& type, int n) {
    std::vector<events::Event> out;
    events::EventReader reader(*db.pool);
    for (int i = 0; i < n; ++i) {
      auto r = append(*writer, "thing-" + std::to_string(i % 3), {new_event(type)});
      auto evs = reader.read_positions({events::Position(r.positions[0])});
      out.push_back(evs.at(0));
    }
    return out;
  }
  void publish(const events::Event& e) {
    broker::PublishOptions po;
    po.exchange = broker::kEventsExchange;
    po.routing_key = e.type.value();
    auto o = store_pub->publish(events::event_message(e), po).get();
    ASSERT_TRUE(o.ok()) << o.reason;
  }
  events::PushSubscriptionOptions options(const std::string& group, const std::string& topic) {
    events::PushSubscriptionOptions o;
    o.group = group;
    o.topics = {topic};
    o.connection = amqp(vhost_url, "test." + group);
    o.pool = db.pool;
    o.overflow_poll = 100ms;
    o.retry.delays = {50ms};
    o.tx_handler = [group](pg::Transaction& tx, const events::Event& e) { recorder(group)(tx, e); };
    return o;
  }
  std::int64_t seen(const std::string& who) const {
    return db.scalar("SELECT count(*) FROM seen WHERE who = $1", {who});
  }
};

std::string vhost_of(const std::string& url) {
  return url.substr(url.rfind('/') + 1);
}

TEST(Push, BoundedQueueIsDeclaredWithItsArguments) {
  Env env;
  auto o = env.options("bounded", "shop.order.*");
  o.max_length = 5;
  o.overflow_max_length = 50;
  o.expires = std::chrono::hours(1);
  events::PushSubscription sub(o);
  sub.start();
  const auto& s = tst::servers();
  const auto out = tst::unique_name("/tmp/sb_queue");
  const auto cmd = "curl -sf -u '" + s.rabbitmq_user + ":" + s.rabbitmq_password + "' '" +
                   s.rabbitmq_mgmt_url + "/api/queues/" + vhost_of(env.vhost_url) +
                   "/sub.bounded' > " + out;
  ASSERT_EQ(tst::run_command(cmd), 0) << cmd;
  std::ifstream in(out);
  std::stringstream body;
  body << in.rdbuf();
  const auto json = body.str();
  std::remove(out.c_str());
  EXPECT_NE(json.find("\"x-max-length\":5"), std::string::npos) << json;
  EXPECT_NE(json.find("\"x-overflow\":\"drop-head\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"x-expires\":3600000"), std::string::npos) << json;
  EXPECT_NE(json.find("\"x-dead-letter-exchange\":\"sb.dlx\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"x-dead-letter-routing-key\":\"sub.bounded.overflow\""), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"durable\":true"), std::string::npos) << json;
}

TEST(Push, DuplicatesAreHandledOnceAndReplayBypassesDedupeForOneGroupOnly) {
  Env env;
  events::PushSubscription a(env.options("group-a", "shop.order.*"));
  events::PushSubscription b(env.options("group-b", "shop.#"));
  a.start();
  b.start();
  auto evs = env.store("shop.order.placed", 5);
  for (const auto& e : evs) env.publish(e);
  env.publish(evs[0]);  // the store re-publishes after a lost confirm
  env.publish(evs[1]);
  ASSERT_TRUE(
      tst::wait_until([&] { return a.status().duplicates == 2 && a.status().handled == 5; }, 20s));
  ASSERT_TRUE(
      tst::wait_until([&] { return b.status().duplicates == 2 && b.status().handled == 5; }, 20s));
  EXPECT_EQ(env.seen("group-a"), 5);
  EXPECT_EQ(env.seen("group-b"), 5);
  EXPECT_EQ(a.status().last_position, evs.back().position);

  // Replay positions 2..4 to group-a only.
  events::EventReader reader(*env.db.pool);
  events::ReplayRequest req;
  req.group = "group-a";
  req.after = events::Position(evs[0].position.value());
  req.up_to = evs[3].position;
  req.filter.types = {"shop.order.*"};
  auto res = events::replay_to_group(reader, *env.store_pub, req);
  EXPECT_EQ(res.published, 3u);
  ASSERT_TRUE(tst::wait_until([&] { return env.seen("group-a") == 8; }, 20s))
      << "replay bypasses deduplication";
  EXPECT_EQ(a.status().replayed, 3u);
  // A sentinel published normally reaches both; by the time group-b has it,
  // a replay leaking into its queue would have been delivered before it.
  auto sentinel = env.store("shop.order.placed", 1);
  env.publish(sentinel[0]);
  ASSERT_TRUE(tst::wait_until([&] { return env.seen("group-b") == 6; }, 20s));
  EXPECT_EQ(b.status().replayed, 0u);
  EXPECT_EQ(env.db.scalar("SELECT count(*) FROM seen WHERE who = 'group-b' AND position = $1",
                          {evs[1].position.value()}),
            1);

  // Replay to a group without a queue fails loudly (mandatory publish).
  req.group = "no-such-group";
  EXPECT_THROW(events::replay_to_group(reader, *env.store_pub, req), broker::BrokerError);
}

TEST(Push, OverflowIsRecordedAndCaughtUpFromTheStore) {
  Env env;
  std::atomic<bool> gate_open{false};
  auto o = env.options("slow", "shop.item.*");
  o.max_length = 5;
  o.workers = 1;
  o.prefetch = 1;
  o.tx_handler = [&](pg::Transaction& tx, const events::Event& e) {
    // The first delivery holds the only worker until overflow was recorded,
    // so the queue fills up and drops its oldest messages.
    tst::wait_until([&] { return gate_open.load(); }, 30s);
    recorder("slow")(tx, e);
  };
  events::PushSubscription sub(o);
  sub.start();
  constexpr int kEvents = 30;
  auto evs = env.store("shop.item.added", kEvents);
  for (const auto& e : evs) env.publish(e);
  ASSERT_TRUE(tst::wait_until([&] { return sub.status().overflowed > 0; }, 20s));
  gate_open = true;
  ASSERT_TRUE(tst::wait_until([&] { return env.seen("slow") == kEvents; }, 30s))
      << "seen " << env.seen("slow") << " overflowed " << sub.status().overflowed;
  EXPECT_EQ(env.db.scalar("SELECT count(DISTINCT position) FROM seen WHERE who = 'slow'"), kEvents);
  const auto st = sub.status();
  std::printf(
      "overflowed %llu, caught up %llu, handled %llu, duplicates %llu\n",
      static_cast<unsigned long long>(st.overflowed), static_cast<unsigned long long>(st.caught_up),
      static_cast<unsigned long long>(st.handled), static_cast<unsigned long long>(st.duplicates));
  EXPECT_GE(st.overflowed, static_cast<std::uint64_t>(kEvents - 1 - 5 - 1));
  EXPECT_EQ(env.db.scalar("SELECT count(*) FROM push_overflow WHERE group_name = 'slow'"),
            static_cast<std::int64_t>(st.overflowed));
  ASSERT_TRUE(tst::wait_until(
      [&] {
        return env.db.scalar(
                   "SELECT count(*) FROM push_overflow WHERE group_name = 'slow' AND "
                   "handled_at IS NULL") == 0;
      },
      20s));
}

}  // namespace
}  // namespace sb::subtest

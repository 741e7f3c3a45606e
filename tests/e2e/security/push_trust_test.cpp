// Trusted publishers of push subscriptions (protocol §10.1, §11.6) against
// real RabbitMQ, each party its own broker user on a fresh vhost: plugin B's
// user can put a forged event into plugin A's `sub.<group>` queue (and its
// overflow queue) through the default exchange; A's PushSubscription parks
// it unhandled. Events published by the store's user (on sb.events) and
// replays by the edge's user are handled, and so is an event that failed
// once and came back through A's own retry queue (published there as A's
// user, the original publisher restored from x-sb-user-id).

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "switchboard/broker/broker.hpp"
#include "switchboard/events/push.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/metrics.hpp"
#include "switchboard/testing/servers.hpp"

namespace sb::sectest {
namespace {

using namespace std::chrono_literals;
namespace tst = sb::testing;

broker::ConnectionOptions amqp(const std::string& url, const std::string& name) {
  broker::ConnectionOptions o;
  o.url = url;
  o.name = name;
  o.heartbeat = 2s;
  o.connect_timeout = 2000ms;
  o.reconnect_min = 100ms;
  o.reconnect_max = 1000ms;
  return o;
}

std::string user_url(const std::string& vhost, const std::string& user,
                     const broker::Permissions& p) {
  std::vector<tst::BrokerTopicPermission> topics;
  for (const auto& t : p.topics) topics.push_back({t.exchange, t.write, t.read});
  return tst::broker_user(vhost, user, p.configure, p.write, p.read, topics);
}

events::Event thing_event(const std::string& tenant,
                          const std::string& id = events::uuid_v4().to_string()) {
  return events::Event{events::EventId(id),
                       events::EventType("ptrust.thing.done"),
                       1,
                       events::StreamId("thing-1"),
                       events::StreamVersion(0),
                       events::Position(1),
                       events::TenantId(tenant),
                       events::now_ms(),
                       events::now_ms(),
                       events::CorrelationId("c1"),
                       std::nullopt,
                       std::nullopt,
                       events::Payload(),
                       events::Payload()};
}

broker::Publisher publisher(const std::string& url, const std::string& name) {
  broker::PublisherOptions po;
  po.connection = amqp(url, name);
  po.topology = broker::platform_topology();  // passive for every user but the store's
  return broker::Publisher(po);
}

void publish_ok(broker::Publisher& pub, broker::Message m, const std::string& exchange,
                const std::string& routing_key) {
  auto f = pub.publish(std::move(m), {exchange, routing_key, true, {}});
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  const auto o = f.get();
  ASSERT_TRUE(o.ok()) << broker::to_string(o.status) << " " << o.reason;
}

/// The parked message with this id, if it is there.
std::optional<broker::ParkedMessage> parked(const std::string& vhost, const std::string& queue,
                                            const std::string& message_id) {
  broker::ParkedQueue q(amqp(vhost, "ptrust-admin"), queue);
  for (auto& p : q.list()) {
    if (p.message.message_id == message_id) return p;
  }
  return std::nullopt;
}

TEST(PushTrust, ForgedEventsAreParkedTrustedOnesHandled) {
  const auto vhost = tst::fresh_vhost("ptrust");
  {
    broker::PublisherOptions po;
    po.connection = amqp(vhost, "admin");
    broker::Publisher admin(po);
    admin.declare(broker::platform_topology());
  }
  const std::string a = tst::unique_name("pa");
  const std::string b = tst::unique_name("pb");
  const std::string store_user = tst::unique_name("sb-store");
  const std::string edge_user = tst::unique_name("sb-edge");
  const auto a_url = user_url(vhost, broker::plugin_user(a), broker::plugin_permissions(a));
  const auto b_url = user_url(vhost, broker::plugin_user(b), broker::plugin_permissions(b));
  const auto store_url =
      user_url(vhost, store_user, broker::platform_permissions(broker::PlatformService::store));
  const auto edge_url =
      user_url(vhost, edge_user, broker::platform_permissions(broker::PlatformService::edge));

  // Plugin A's push subscription, as A's user, trusting the store, the edge
  // and itself (what the SDK configures).
  const std::string group = a + ".react";
  const std::string queue = events::push_queue_name(group);
  const auto fail_once = events::uuid_v4().to_string();
  std::mutex mu;
  std::map<std::string, int> attempts;  // event id -> handler calls
  events::PushSubscriptionOptions so;
  so.group = group;
  so.topics = {"ptrust.thing.*"};
  so.connection = amqp(a_url, "a-push");
  so.migrate = false;
  so.retry.delays = {200ms};
  so.trusted_publishers = {store_user, edge_user, broker::plugin_user(a)};
  so.handler = [&](const events::Event& e) {
    std::lock_guard lk(mu);
    if (++attempts[e.id.value()] == 1 && e.id.value() == fail_once) {
      throw std::runtime_error("first attempt fails");
    }
  };
  events::PushSubscription push(so);
  push.start();
  auto handled = [&](const std::string& id) {
    std::lock_guard lk(mu);
    auto it = attempts.find(id);
    return it == attempts.end() ? 0 : it->second;
  };

  // Plugin B forges events for A's group by name through the default
  // exchange: into the main queue and into the overflow queue.
  auto b_pub = publisher(b_url, "b-pub");
  const auto forged = thing_event("victim");
  const auto forged_overflow = thing_event("victim");
  publish_ok(b_pub, events::event_message(forged), "", queue);
  publish_ok(b_pub, events::event_message(forged_overflow), "",
             events::push_overflow_queue_name(group));

  // The store publishes on sb.events; the edge replays to the group.
  auto store_pub = publisher(store_url, "store-pub");
  const auto genuine = thing_event("acme");
  const auto failing = thing_event("acme", fail_once);
  publish_ok(store_pub, events::event_message(genuine), broker::kEventsExchange,
             "ptrust.thing.done");
  publish_ok(store_pub, events::event_message(failing), broker::kEventsExchange,
             "ptrust.thing.done");
  auto edge_pub = publisher(edge_url, "edge-pub");
  const auto replayed = thing_event("acme");
  publish_ok(edge_pub, events::event_message(replayed, true), "", queue);

  EXPECT_TRUE(tst::wait_until([&] { return handled(genuine.id.value()) == 1; }, 10s));
  EXPECT_TRUE(tst::wait_until([&] { return handled(replayed.id.value()) == 1; }, 10s));
  // Failed once, retried through sub.<group>.retry.200 as A's user, handled.
  EXPECT_TRUE(tst::wait_until([&] { return handled(fail_once) == 2; }, 10s));

  // The forged ones are parked with the reason, never handled.
  std::optional<broker::ParkedMessage> p;
  ASSERT_TRUE(tst::wait_until(
      [&] { return (p = parked(vhost, queue, forged.id.value())).has_value(); }, 10s, 50ms));
  EXPECT_NE(p->error.find("untrusted publisher '" + broker::plugin_user(b) + "'"),
            std::string::npos)
      << p->error;
  const auto* original = p->message.header_string(broker::kOriginalUserIdHeader);
  ASSERT_NE(original, nullptr);
  EXPECT_EQ(*original, broker::plugin_user(b));
  std::optional<broker::ParkedMessage> po;
  ASSERT_TRUE(tst::wait_until(
      [&] {
        return (po = parked(vhost, events::push_overflow_queue_name(group),
                            forged_overflow.id.value()))
            .has_value();
      },
      10s, 50ms));
  EXPECT_NE(po->error.find("untrusted publisher"), std::string::npos) << po->error;
  EXPECT_EQ(handled(forged.id.value()), 0);
  EXPECT_EQ(handled(forged_overflow.id.value()), 0);

  const auto s = push.status();
  EXPECT_EQ(s.untrusted, 2u);
  EXPECT_EQ(s.handled, 3u);
  EXPECT_EQ(s.replayed, 1u);
  EXPECT_EQ(s.failures, 1u);
  EXPECT_EQ(metrics::Registry::global()
                .counter("sb_push_untrusted_total", "", {{"group", group}})
                .value(),
            2u);
  // Nothing of the genuine ones was parked.
  EXPECT_FALSE(parked(vhost, queue, fail_once).has_value());
  // An operator cannot launder a forged message: requeue leaves it parked
  // (republished by the operator's connection it would look trusted).
  EXPECT_TRUE(broker::ParkedQueue::untrusted(p->message));
  broker::ParkedQueue admin(amqp(vhost, "ptrust-requeue"), queue);
  EXPECT_EQ(admin.requeue(forged.id.value()), 0u);
  EXPECT_EQ(admin.requeue(), 0u);
  EXPECT_TRUE(parked(vhost, queue, forged.id.value()).has_value());
  EXPECT_EQ(handled(forged.id.value()), 0);
  EXPECT_EQ(admin.drop(forged.id.value()), 1u);
  push.stop(std::chrono::steady_clock::now() + 5s);
}

// With no trusted publishers the check is off: B's forged event is handled
// (what every push subscription did before; the SDK always sets the list).
TEST(PushTrust, AnEmptyListChecksNothing) {
  const auto vhost = tst::fresh_vhost("ptrust");
  const std::string a = tst::unique_name("pa");
  const std::string b = tst::unique_name("pb");
  {
    broker::PublisherOptions po;
    po.connection = amqp(vhost, "admin");
    broker::Publisher admin(po);
    admin.declare(broker::platform_topology());
  }
  const auto a_url = user_url(vhost, broker::plugin_user(a), broker::plugin_permissions(a));
  const auto b_url = user_url(vhost, broker::plugin_user(b), broker::plugin_permissions(b));
  std::atomic<int> received{0};
  events::PushSubscriptionOptions so;
  so.group = a + ".react";
  so.topics = {"ptrust.thing.*"};
  so.connection = amqp(a_url, "a-push");
  so.migrate = false;
  so.handler = [&](const events::Event&) { received.fetch_add(1); };
  events::PushSubscription push(so);
  push.start();
  auto b_pub = publisher(b_url, "b-pub");
  publish_ok(b_pub, events::event_message(thing_event("acme")), "",
             events::push_queue_name(so.group));
  EXPECT_TRUE(tst::wait_until([&] { return received.load() == 1; }, 10s));
  EXPECT_EQ(push.status().untrusted, 0u);
  push.stop(std::chrono::steady_clock::now() + 5s);
}

}  // namespace
}  // namespace sb::sectest

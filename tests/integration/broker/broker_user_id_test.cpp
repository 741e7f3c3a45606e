// The AMQP user_id property: every publish carries the connection's login
// user, RabbitMQ refuses any other value (and the publisher reports that as
// a failure, never a hang), consumers see the validated publisher, retries
// keep it, and a user that may not configure exchanges declares them
// passively. Real RabbitMQ, a vhost per test.

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

namespace sb::broker::test {
namespace {

using sb::testing::broker_user;
using sb::testing::fresh_vhost;
using sb::testing::servers;
using sb::testing::unique_name;
using sb::testing::wait_until;

PublisherOptions publisher_options(const std::string& url, const std::string& name = "test.pub") {
  PublisherOptions o;
  o.connection = connection(url, name);
  return o;
}

ConsumerOptions consumer_options(const std::string& url) {
  ConsumerOptions o;
  o.connection = connection(url, "test.con");
  return o;
}

QueueSpec declare_queue(const std::string& url, const std::string& name) {
  Publisher admin(publisher_options(url, "test.admin"));
  QueueSpec q;
  q.name = name;
  Topology t = platform_topology();
  t.queues.push_back(q);
  admin.declare(t);
  return q;
}

struct Seen {
  std::mutex mu;
  std::vector<Message> messages;
  void add(const Message& m) {
    std::lock_guard lk(mu);
    messages.push_back(m);
  }
  std::size_t size() {
    std::lock_guard lk(mu);
    return messages.size();
  }
};

TEST(BrokerUserId, PublishesCarryTheLoginUser) {
  const auto url = fresh_vhost("uid");
  const auto q = declare_queue(url, "work");
  Seen seen;
  Consumer con(consumer_options(url));
  con.consume(q, ConsumeOptions{}, [&](const Delivery& d) { seen.add(d.message); });
  Publisher pub(publisher_options(url));
  auto o = pub.publish(json("{}"), {"", "work", true, {}}).get();
  ASSERT_TRUE(o.ok()) << o.reason;
  ASSERT_TRUE(wait_until([&] { return seen.size() == 1; }, 10s));
  std::lock_guard lk(seen.mu);
  EXPECT_EQ(seen.messages[0].user_id, servers().rabbitmq_user);
}

TEST(BrokerUserId, AForgedUserIdIsRefusedAndReportedNotHung) {
  const auto url = fresh_vhost("uid");
  declare_queue(url, "work");
  Publisher pub(publisher_options(url));
  Message forged = json("{}");
  forged.user_id = "someone-else";
  const auto started = std::chrono::steady_clock::now();
  auto f = pub.publish(std::move(forged), {"", "work", true, {}});  // no deadline
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "a refused publish must not hang";
  const auto o = f.get();
  EXPECT_EQ(o.status, PublishStatus::failed);
  EXPECT_NE(o.reason.find("406"), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("PRECONDITION_FAILED"), std::string::npos) << o.reason;
  EXPECT_LT(ms_since(started), 5000);
  // The publisher goes on: the next message is confirmed on a new channel.
  auto next = pub.publish(json("{}"), {"", "work", true, {}}).get();
  EXPECT_TRUE(next.ok()) << next.reason;
}

TEST(BrokerUserId, OnlyTheForgedMessageFailsAmongMany) {
  const auto url = fresh_vhost("uid");
  const auto q = declare_queue(url, "work");
  Seen seen;
  Consumer con(consumer_options(url));
  con.consume(q, ConsumeOptions{}, [&](const Delivery& d) { seen.add(d.message); });
  Publisher pub(publisher_options(url));
  std::vector<std::future<PublishOutcome>> outcomes;
  for (int i = 0; i < 201; ++i) {
    Message m = json("{\"n\":" + std::to_string(i) + "}");
    if (i == 100) m.user_id = "someone-else";
    outcomes.push_back(pub.publish(std::move(m), {"", "work", true, {}}));
  }
  for (int i = 0; i < 201; ++i) {
    ASSERT_EQ(outcomes[static_cast<std::size_t>(i)].wait_for(20s), std::future_status::ready) << i;
    const auto o = outcomes[static_cast<std::size_t>(i)].get();
    if (i == 100) {
      EXPECT_EQ(o.status, PublishStatus::failed);
      EXPECT_NE(o.reason.find("PRECONDITION_FAILED"), std::string::npos) << o.reason;
    } else {
      EXPECT_TRUE(o.ok()) << i << ": " << o.reason;
    }
  }
  // At least once: every good message arrives (some perhaps twice).
  EXPECT_TRUE(wait_until(
      [&] {
        std::lock_guard lk(seen.mu);
        std::set<std::string> bodies;
        for (const auto& m : seen.messages) bodies.insert(m.body);
        return bodies.size() == 200;
      },
      10s));
}

TEST(BrokerUserId, RetriesKeepTheOriginalPublisher) {
  const auto url = fresh_vhost("uid");
  const auto q = declare_queue(url, "work");
  const std::string user = unique_name("u");
  const auto user_url = broker_user(url, user, ".*", ".*", ".*");

  std::atomic<int> attempts{0};
  Seen seen;
  Consumer con(consumer_options(url));
  ConsumeOptions opts;
  opts.retry.delays = {50ms};
  con.consume(q, opts, [&](const Delivery& d) {
    seen.add(d.message);
    if (attempts.fetch_add(1) == 0) throw std::runtime_error("first attempt fails");
  });
  Publisher pub(publisher_options(user_url));
  ASSERT_TRUE(pub.publish(json("{}"), {"", "work", true, {}}).get().ok());
  ASSERT_TRUE(wait_until([&] { return seen.size() == 2; }, 10s));
  std::lock_guard lk(seen.mu);
  EXPECT_EQ(seen.messages[0].user_id, user);
  EXPECT_EQ(seen.messages[1].user_id, user) << "the retry must not become the consumer's";
  EXPECT_EQ(seen.messages[1].headers.count(std::string(kOriginalUserIdHeader)), 0u);
}

TEST(BrokerUserId, AnOriginalUserHeaderFromSomeoneElseIsIgnored) {
  const auto url = fresh_vhost("uid");
  const auto q = declare_queue(url, "work");
  const std::string user = unique_name("u");
  const auto user_url = broker_user(url, user, ".*", ".*", ".*");
  Seen seen;
  Consumer con(consumer_options(url));
  con.consume(q, ConsumeOptions{}, [&](const Delivery& d) { seen.add(d.message); });
  Publisher pub(publisher_options(user_url));
  Message m = json("{}");
  m.headers[std::string(kOriginalUserIdHeader)] = std::string("sb-store");
  ASSERT_TRUE(pub.publish(std::move(m), {"", "work", true, {}}).get().ok());
  ASSERT_TRUE(wait_until([&] { return seen.size() == 1; }, 10s));
  std::lock_guard lk(seen.mu);
  EXPECT_EQ(seen.messages[0].user_id, user);
  EXPECT_EQ(seen.messages[0].headers.count(std::string(kOriginalUserIdHeader)), 0u);
}

TEST(BrokerUserId, RpcRequestsAndRepliesCarryTheirUsers) {
  const auto url = fresh_vhost("uid");
  const std::string user = unique_name("u");
  const auto user_url = broker_user(url, user, ".*", ".*", ".*");
  RpcServerOptions so;
  so.connection = connection(url, "test.rpcs");
  RpcServer server(so);
  std::mutex mu;
  std::string caller;
  server.serve("echo", [&](const Delivery& d) {
    {
      std::lock_guard lk(mu);
      caller = d.message.user_id;
    }
    return json("{}");
  });
  RpcClientOptions co;
  co.connection = connection(user_url, "test.rpcc");
  RpcClient client(co);
  const Message reply = client.call("echo", json("{}"), 5s).get();
  EXPECT_EQ(reply.user_id, servers().rabbitmq_user);
  std::lock_guard lk(mu);
  EXPECT_EQ(caller, user);
}

TEST(BrokerUserId, AUserThatMayNotConfigureExchangesDeclaresThemPassively) {
  const auto url = fresh_vhost("uid");
  declare_queue(url, "work");  // the admin creates the platform exchanges
  const std::string user = unique_name("u");
  const auto user_url = broker_user(url, user, "^work$", ".*", ".*");
  PublisherOptions po = publisher_options(user_url);
  po.topology = platform_topology();
  Publisher pub(po);
  Topology t = platform_topology();
  QueueSpec q;
  q.name = "work";
  t.queues.push_back(q);
  pub.declare(t, 10s);  // would be 403 ACCESS_REFUSED if declared actively
  auto o = pub.publish(json("{}"), {kEventsExchange, "x.y.z", false, {}}).get();
  EXPECT_TRUE(o.ok()) << o.reason;
  // A later session of the same user starts passive at once.
  Publisher again(po);
  EXPECT_TRUE(again.publish(json("{}"), {"", "work", true, {}}).get().ok());
}

TEST(BrokerUserId, PublishingWithoutWritePermissionFailsWithTheReason) {
  const auto url = fresh_vhost("uid");
  declare_queue(url, "work");
  const std::string user = unique_name("u");
  const auto user_url = broker_user(url, user, "^$", "^amq\\.default$", ".*");
  Publisher pub(publisher_options(user_url));
  auto f = pub.publish(json("{}"), {kEventsExchange, "x.y.z", false, {}});
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  const auto o = f.get();
  EXPECT_EQ(o.status, PublishStatus::failed);
  EXPECT_NE(o.reason.find("403"), std::string::npos) << o.reason;
  EXPECT_TRUE(pub.publish(json("{}"), {"", "work", true, {}}).get().ok());
}

}  // namespace
}  // namespace sb::broker::test

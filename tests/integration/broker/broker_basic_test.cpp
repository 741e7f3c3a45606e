// Publish/consume, topology, RPC and retry/park against the harness's real
// RabbitMQ. Each test uses a vhost of its own.

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <sstream>
#include <vector>

namespace sb::broker::test {
namespace {

using sb::testing::fresh_vhost;
using sb::testing::wait_until;

PublisherOptions publisher_options(const std::string& url) {
  PublisherOptions o;
  o.connection = connection(url, "test.pub");
  return o;
}

ConsumerOptions consumer_options(const std::string& url) {
  ConsumerOptions o;
  o.connection = connection(url, "test.con");
  return o;
}

TEST(BrokerBasic, PublishesWithConfirmsAndConsumesWithAcks) {
  const auto url = fresh_vhost("bk");
  Publisher pub(publisher_options(url));
  Consumer con(consumer_options(url));
  QueueSpec q;
  q.name = "work";
  Topology t = platform_topology();
  t.queues.push_back(q);
  t.bindings.push_back({"work", kEventsExchange, "orders.#"});
  pub.declare(t);

  std::mutex mu;
  std::set<std::string> seen;
  TraceContext trace{child_traceparent(""), "corr-1", "cause-1"};
  std::atomic<int> trace_ok{0};
  con.consume(q, ConsumeOptions{}, [&](const Delivery& d) {
    auto got = trace_of(d.message);
    if (got.traceparent == trace.traceparent && got.correlation_id == "corr-1" &&
        got.causation_id == "cause-1") {
      trace_ok.fetch_add(1);
    }
    std::lock_guard lk(mu);
    seen.insert(d.message.body);
  });

  std::vector<std::future<PublishOutcome>> outcomes;
  for (int i = 0; i < 200; ++i) {
    Message m = json("{\"n\":" + std::to_string(i) + "}");
    set_trace(m, trace);
    outcomes.push_back(pub.publish(std::move(m), {kEventsExchange, "orders.created", false, {}}));
  }
  for (auto& f : outcomes) {
    auto o = f.get();
    EXPECT_EQ(o.status, PublishStatus::confirmed) << o.reason;
  }
  EXPECT_TRUE(wait_until(
      [&] {
        std::lock_guard lk(mu);
        return seen.size() == 200;
      },
      10s));
  EXPECT_EQ(trace_ok.load(), 200);
}

TEST(BrokerBasic, UnroutableMandatoryIsReturnedOthersConfirmed) {
  const auto url = fresh_vhost("bk");
  Publisher pub(publisher_options(url));
  QueueSpec q;
  q.name = "sink";
  Topology t = platform_topology();
  t.queues.push_back(q);
  t.bindings.push_back({"sink", kEventsExchange, "known"});
  pub.declare(t);
  std::vector<std::future<PublishOutcome>> known, unknown;
  for (int i = 0; i < 50; ++i) {
    known.push_back(pub.publish(json("{}"), {kEventsExchange, "known", true, {}}));
    unknown.push_back(pub.publish(json("{}"), {kEventsExchange, "nobody", true, {}}));
  }
  for (auto& f : known) EXPECT_EQ(f.get().status, PublishStatus::confirmed);
  for (auto& f : unknown) {
    auto o = f.get();
    EXPECT_EQ(o.status, PublishStatus::returned);
    EXPECT_NE(o.reason.find("NO_ROUTE"), std::string::npos) << o.reason;
  }
}

TEST(BrokerBasic, QueueArgumentsAreAppliedAndConflictsRejected) {
  const auto url = fresh_vhost("bk");
  Publisher pub(publisher_options(url));
  QueueSpec bounded;
  bounded.name = "bounded";
  bounded.max_length = 1;
  bounded.overflow = Overflow::reject_publish;
  bounded.expires = std::chrono::minutes(10);
  bounded.single_active_consumer = true;
  bounded.dead_letter_exchange = kDeadLetterExchange;
  QueueSpec quorum;
  quorum.name = "replicated";
  quorum.quorum = true;
  QueueSpec temp;
  temp.name = "temp";
  temp.durable = false;
  temp.auto_delete = true;
  temp.message_ttl = 60000ms;
  Topology t = platform_topology();
  t.queues = {bounded, quorum, temp};
  pub.declare(t);
  pub.declare(t);  // idempotent

  // x-max-length=1 with reject-publish: the second message is nacked.
  auto first = pub.publish(json("{}"), {"", "bounded", true, {}}).get();
  auto second = pub.publish(json("{}"), {"", "bounded", true, {}}).get();
  EXPECT_EQ(first.status, PublishStatus::confirmed);
  EXPECT_EQ(second.status, PublishStatus::failed);
  EXPECT_NE(second.reason.find("nack"), std::string::npos) << second.reason;

  // A conflicting redeclaration is refused with the broker's reason and
  // forgotten; the publisher recovers and keeps working.
  QueueSpec conflicting = bounded;
  conflicting.max_length = 5;
  Topology bad;
  bad.queues = {conflicting};
  try {
    pub.declare(bad);
    ADD_FAILURE() << "expected RejectedError";
  } catch (const RejectedError& e) {
    EXPECT_NE(std::string(e.what()).find("PRECONDITION_FAILED"), std::string::npos) << e.what();
  }
  auto after = pub.publish(json("{}"), {"", "replicated", true, {}}).get();
  EXPECT_EQ(after.status, PublishStatus::confirmed) << after.reason;
}

TEST(BrokerBasic, DeadlinePassesWhileWaitingForWindow) {
  const auto url = fresh_vhost("bk");
  PublisherOptions o = publisher_options(url);
  o.connection.url = "amqp://nobody:wrong@127.0.0.1:1/";  // never connects
  o.max_in_flight = 2;
  Publisher pub(o);
  auto t0 = std::chrono::steady_clock::now();
  auto a = pub.publish(json("{}"), {"", "q", false, t0 + 300ms});
  auto b = pub.publish(json("{}"), {"", "q", false, t0 + 300ms});
  auto c = pub.publish(json("{}"), {"", "q", false, t0 + 300ms});  // blocks for the window
  for (auto* f : {&a, &b, &c}) {
    auto r = f->get();
    EXPECT_EQ(r.status, PublishStatus::failed);
    EXPECT_NE(r.reason.find("deadline"), std::string::npos) << r.reason;
  }
  EXPECT_LT(ms_since(t0), 1000.0);
}

// ------------------------------------------------------------------ RPC

TEST(BrokerRpc, NoRouteFailsAtOnce) {
  const auto url = fresh_vhost("bk");
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 4096});
  ASSERT_TRUE(wait_until([&] { return client.connected(); }, 10s));
  const auto t0 = std::chrono::steady_clock::now();
  auto f = client.call("nobody", json("{}"), 5s);
  try {
    f.get();
    ADD_FAILURE() << "expected no_route";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), RpcErrorCode::no_route) << e.what();
  }
  const double elapsed = ms_since(t0);
  std::printf("no_route after %.2f ms\n", elapsed);
  EXPECT_LT(elapsed, 1000.0);
}

TEST(BrokerRpc, NoConsumerTimesOutAndHandlerNeverRunsLater) {
  const auto url = fresh_vhost("bk");
  // The service's queue exists but nobody consumes it.
  {
    Publisher pub(publisher_options(url));
    Topology t = platform_topology();
    t.queues.push_back(RpcServer::queue_for("idle"));
    t.bindings.push_back({"rpc.idle", kRpcExchange, "idle"});
    pub.declare(t);
  }
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 4096});
  ASSERT_TRUE(wait_until([&] { return client.connected(); }, 10s));
  const auto t0 = std::chrono::steady_clock::now();
  auto f = client.call("idle", json("\"old\""), 300ms);
  try {
    f.get();
    ADD_FAILURE() << "expected timeout";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), RpcErrorCode::timeout) << e.what();
  }
  const double elapsed = ms_since(t0);
  std::printf("timeout after %.2f ms (deadline 300 ms)\n", elapsed);
  EXPECT_GE(elapsed, 299.0);
  EXPECT_LE(elapsed, 350.0);

  std::atomic<int> old_runs{0}, new_runs{0};
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 2, 16});
  server.serve("idle", [&](const Delivery& d) {
    (d.message.body == "\"old\"" ? old_runs : new_runs).fetch_add(1);
    return json("\"pong\"");
  });
  // A fresh call succeeding proves the server is consuming; the stale one
  // was queued before it and must have been dropped, never run.
  auto reply = client.call("idle", json("\"new\""), 5s).get();
  EXPECT_EQ(reply.body, "\"pong\"");
  EXPECT_FALSE(wait_until([&] { return old_runs.load() > 0; }, 500ms));
  EXPECT_EQ(new_runs.load(), 1);
}

TEST(BrokerRpc, ThousandCallsInFlight) {
  const auto url = fresh_vhost("bk");
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 4, 64});
  server.serve("echo", [](const Delivery& d) {
    Message r;
    r.body = d.message.body;
    return r;
  });
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 4096});
  std::vector<std::future<Message>> calls;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) calls.push_back(client.call("echo", json(std::to_string(i)), 20s));
  int ok = 0;
  for (int i = 0; i < 1000; ++i) {
    try {
      if (calls[static_cast<std::size_t>(i)].get().body == std::to_string(i)) ++ok;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "call " << i << ": " << e.what();
    }
  }
  std::printf("1000 concurrent calls: %d ok in %.1f ms\n", ok, ms_since(t0));
  EXPECT_EQ(ok, 1000);
}

TEST(BrokerRpc, HandlerErrorComesBackAsRemote) {
  const auto url = fresh_vhost("bk");
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 1, 4});
  server.serve("broken", [](const Delivery&) -> Message { throw std::runtime_error("boom"); });
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 16});
  try {
    client.call("broken", json("{}"), 5s).get();
    ADD_FAILURE() << "expected remote error";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), RpcErrorCode::remote);
    EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos);
  }
}

// ---------------------------------------------------------- retry / park

std::vector<std::int64_t> timestamps(const std::string& csv) {
  std::vector<std::int64_t> out;
  std::stringstream in(csv);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  return out;
}

TEST(BrokerRetry, FailingHandlerRetriesWithGrowingDelaysThenParksAndRequeueRedelivers) {
  const auto url = fresh_vhost("bk");
  Consumer con(consumer_options(url));
  QueueSpec q;
  q.name = "flaky";
  ConsumeOptions co;
  co.prefetch = 8;
  co.retry.delays = {100ms, 300ms, 900ms};
  std::atomic<int> attempts{0};
  std::atomic<bool> healthy{false};
  std::atomic<int> successes{0};
  con.consume(q, co, [&](const Delivery& d) {
    if (!healthy.load()) {
      attempts.fetch_add(1);
      throw std::runtime_error("always fails (attempt " + std::to_string(d.attempt) + ")");
    }
    successes.fetch_add(1);
  });
  Publisher pub(publisher_options(url));
  Message m = json("{\"poison\":true}");
  const std::string id = m.message_id;
  ASSERT_TRUE(pub.publish(std::move(m), {"", "flaky", true, {}}).get().ok());

  ParkedQueue parked(connection(url, "test.admin"), "flaky");
  std::vector<ParkedMessage> list;
  ASSERT_TRUE(wait_until(
      [&] {
        list = parked.list();
        return !list.empty();
      },
      15s, 50ms));
  ASSERT_EQ(list.size(), 1U);
  EXPECT_EQ(attempts.load(), 4);
  EXPECT_EQ(list[0].failures, 4U);
  EXPECT_EQ(list[0].message.message_id, id);
  EXPECT_NE(list[0].error.find("always fails (attempt 4)"), std::string::npos) << list[0].error;
  const auto* at = list[0].message.header_string(kFailedAtHeader);
  ASSERT_NE(at, nullptr);
  const auto ts = timestamps(*at);
  ASSERT_EQ(ts.size(), 4U);
  std::printf("failure gaps: %lld ms, %lld ms, %lld ms (delays 100, 300, 900)\n",
              static_cast<long long>(ts[1] - ts[0]), static_cast<long long>(ts[2] - ts[1]),
              static_cast<long long>(ts[3] - ts[2]));
  EXPECT_GE(ts[1] - ts[0], 100);
  EXPECT_GE(ts[2] - ts[1], 300);
  EXPECT_GE(ts[3] - ts[2], 900);
  EXPECT_GT(ts[2] - ts[1], ts[1] - ts[0]);
  EXPECT_GT(ts[3] - ts[2], ts[2] - ts[1]);
  // Listing does not consume.
  EXPECT_EQ(parked.list().size(), 1U);

  healthy.store(true);
  EXPECT_EQ(parked.requeue(id), 1U);
  EXPECT_TRUE(wait_until([&] { return successes.load() == 1; }, 10s));
  EXPECT_TRUE(parked.list().empty());
}

TEST(BrokerRetry, PermanentErrorParksAtOnceWithoutRetries) {
  const auto url = fresh_vhost("bk");
  Consumer con(consumer_options(url));
  QueueSpec q;
  q.name = "strict";
  ConsumeOptions co;
  // Long delays: a message that went through a retry queue would not be
  // parked before the deadline below.
  co.retry.delays = {30s, 60s};
  std::atomic<int> attempts{0};
  std::atomic<int> good{0};
  con.consume(q, co, [&](const Delivery& d) {
    if (d.message.body.rfind("{", 0) != 0) {
      attempts.fetch_add(1);
      throw PermanentError("malformed JSON at offset 0");
    }
    good.fetch_add(1);
  });
  Publisher pub(publisher_options(url));
  Message bad = json("not json");
  const std::string id = bad.message_id;
  ASSERT_TRUE(pub.publish(std::move(bad), {"", "strict", true, {}}).get().ok());
  ASSERT_TRUE(pub.publish(json("{}"), {"", "strict", true, {}}).get().ok());

  ParkedQueue parked(connection(url, "test.admin"), "strict");
  std::vector<ParkedMessage> list;
  ASSERT_TRUE(wait_until(
      [&] {
        list = parked.list();
        return !list.empty();
      },
      10s, 50ms));
  ASSERT_EQ(list.size(), 1U);
  EXPECT_EQ(attempts.load(), 1);
  EXPECT_EQ(list[0].message.message_id, id);
  EXPECT_EQ(list[0].failures, 1U);
  EXPECT_NE(list[0].error.find("malformed JSON"), std::string::npos) << list[0].error;
  const auto permanent = list[0].message.headers.find(kPermanentHeader);
  ASSERT_NE(permanent, list[0].message.headers.end());
  EXPECT_EQ(std::get<bool>(permanent->second), true);
  EXPECT_TRUE(wait_until([&] { return good.load() == 1; }, 5s));

  // Requeued, it starts afresh (attempt 1) and is parked again at once.
  EXPECT_EQ(parked.requeue(id), 1U);
  EXPECT_TRUE(wait_until([&] { return attempts.load() == 2; }, 10s));
  ASSERT_TRUE(wait_until(
      [&] {
        list = parked.list();
        return !list.empty();
      },
      10s, 50ms));
  EXPECT_EQ(list[0].failures, 1U);
}

TEST(BrokerRetry, ParkedMessagesCanBeDropped) {
  const auto url = fresh_vhost("bk");
  Consumer con(consumer_options(url));
  QueueSpec q;
  q.name = "doomed";
  ConsumeOptions co;
  co.retry.delays = {};
  con.consume(q, co, [](const Delivery&) { throw std::runtime_error("no"); });
  Publisher pub(publisher_options(url));
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(pub.publish(json("{}"), {"", "doomed", true, {}}).get().ok());
  ParkedQueue parked(connection(url, "test.admin"), "doomed");
  ASSERT_TRUE(wait_until([&] { return parked.list().size() == 3; }, 10s, 50ms));
  const auto list = parked.list();
  EXPECT_EQ(parked.drop(list[1].message.message_id), 1U);
  EXPECT_EQ(parked.list().size(), 2U);
  EXPECT_EQ(parked.drop(), 2U);
  EXPECT_TRUE(parked.list().empty());
}

}  // namespace
}  // namespace sb::broker::test

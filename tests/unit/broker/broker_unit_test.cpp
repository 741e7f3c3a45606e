// Server-free tests: message trace helpers, topology merging and names, the
// conversion between our Message and rabbitmq-c's properties, and the
// batching of acks.

#include "amqp_codec.hpp"
#include "consuming_session.hpp"
#include "switchboard/broker/broker.hpp"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace sb::broker {
namespace {

TEST(BrokerMessage, ChildTraceparentKeepsTraceAndMakesNewSpan) {
  const std::string parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const std::string child = child_traceparent(parent);
  ASSERT_EQ(child.size(), 55U);
  EXPECT_EQ(child.substr(0, 36), parent.substr(0, 36));
  EXPECT_NE(child.substr(36, 16), parent.substr(36, 16));
  EXPECT_EQ(child.substr(52), "-01");
  const std::string fresh = child_traceparent("garbage");
  EXPECT_EQ(fresh.size(), 55U);
  EXPECT_EQ(fresh.substr(0, 3), "00-");
}

TEST(BrokerMessage, CausedByChainsIds) {
  Message cause;
  cause.message_id = "m1";
  set_trace(cause, TraceContext{child_traceparent(""), "c1", ""});
  const TraceContext t = caused_by(cause);
  EXPECT_EQ(t.correlation_id, "c1");
  EXPECT_EQ(t.causation_id, "m1");
  EXPECT_EQ(t.traceparent.substr(3, 32), trace_of(cause).traceparent.substr(3, 32));
  Message orphan;
  orphan.message_id = "m2";
  EXPECT_EQ(caused_by(orphan).correlation_id, "m2");
}

TEST(BrokerMessage, HeaderAccessors) {
  Message m;
  m.headers["n"] = std::int64_t{42};
  m.headers["s"] = std::string("17");
  m.headers["x"] = std::string("no");
  EXPECT_EQ(m.header_int("n"), 42);
  EXPECT_EQ(m.header_int("s"), 17);
  EXPECT_FALSE(m.header_int("x").has_value());
  EXPECT_FALSE(m.header_int("missing").has_value());
  ASSERT_NE(m.header_string("x"), nullptr);
  EXPECT_EQ(*m.header_string("x"), "no");
  EXPECT_EQ(new_id().size(), 32U);
  EXPECT_NE(new_id(), new_id());
}

TEST(BrokerTopology, PlatformExchangesAndMergeDeduplicates) {
  Topology t = platform_topology();
  ASSERT_EQ(t.exchanges.size(), 5U);
  EXPECT_EQ(t.exchanges[0].name, "sb.events");
  EXPECT_EQ(t.exchanges[0].type, ExchangeType::topic);
  EXPECT_EQ(t.exchanges[1].type, ExchangeType::direct);
  EXPECT_EQ(t.exchanges[3].name, "sb.rpc");
  Topology extra;
  QueueSpec q;
  q.name = "q";
  extra.queues.push_back(q);
  extra.bindings.push_back({"q", "sb.events", "a.#"});
  t.merge(platform_topology()).merge(extra).merge(extra);
  EXPECT_EQ(t.exchanges.size(), 5U);
  EXPECT_EQ(t.queues.size(), 1U);
  EXPECT_EQ(t.bindings.size(), 1U);
  EXPECT_EQ(retry_queue_name("q", std::chrono::milliseconds(1500)), "q.retry.1500");
  EXPECT_EQ(parked_queue_name("q"), "q.parked");
  EXPECT_EQ(RpcServer::queue_for("billing").name, "rpc.billing");
  EXPECT_TRUE(RpcServer::queue_for("billing").auto_delete);
}

TEST(BrokerCodec, PropertiesRoundTrip) {
  Message m;
  m.body = "{}";
  m.message_id = "id-1";
  m.correlation_id = "corr";
  m.reply_to = "amq.rabbitmq.reply-to";
  m.type = "t.x";
  m.expiration = std::chrono::milliseconds(1234);
  m.timestamp = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  m.headers["s"] = std::string("v");
  m.headers["i"] = std::int64_t{-5};
  m.headers["d"] = 2.5;
  m.headers["b"] = true;
  detail::PropertiesBuilder builder;
  const Message back = detail::decode_properties(builder.build(m, "x-extra", 9));
  EXPECT_EQ(back.content_type, "application/json");
  EXPECT_EQ(back.message_id, "id-1");
  EXPECT_EQ(back.correlation_id, "corr");
  EXPECT_EQ(back.reply_to, "amq.rabbitmq.reply-to");
  EXPECT_EQ(back.type, "t.x");
  EXPECT_TRUE(back.persistent);
  EXPECT_EQ(back.expiration, std::chrono::milliseconds(1234));
  EXPECT_EQ(back.timestamp, m.timestamp);
  EXPECT_EQ(back.headers, [&] {
    Headers h = m.headers;
    h["x-extra"] = std::int64_t{9};
    return h;
  }());
}

TEST(BrokerCodec, QueueArgumentsAndUrls) {
  QueueSpec q;
  q.name = "q";
  q.max_length = 10;
  q.overflow = Overflow::reject_publish_dlx;
  q.expires = std::chrono::milliseconds(60000);
  q.single_active_consumer = true;
  q.quorum = true;
  q.dead_letter_exchange = "sb.dlx";
  q.dead_letter_routing_key = "dead";
  detail::TableStorage args;
  detail::queue_arguments(q, args);
  EXPECT_EQ(args.entries.size(), 7U);
  const auto url = detail::parse_url("amqp://u:p@example.org:5673/vh");
  EXPECT_EQ(url.host, "example.org");
  EXPECT_EQ(url.port, 5673);
  EXPECT_EQ(url.user, "u");
  EXPECT_EQ(url.vhost, "vh");
  EXPECT_EQ(detail::parse_url("amqp://u:p@h:1/").vhost, "/");
  EXPECT_THROW(detail::parse_url("http://nope"), BrokerError);
}

// ------------------------------------------------------------ ack batching

using Sent = std::vector<std::pair<std::uint64_t, bool>>;  // tag, multiple

Sent flush(detail::AckTracker& t, std::size_t* acked = nullptr) {
  Sent sent;
  const auto n = t.flush([&](std::uint64_t tag, bool multiple) {
    sent.emplace_back(tag, multiple);
    return true;
  });
  if (acked != nullptr) *acked = n;
  return sent;
}

TEST(BrokerAckTracker, SettledFrontGoesOutAsOneCumulativeAck) {
  detail::AckTracker t;
  for (std::uint64_t tag = 1; tag <= 5; ++tag) t.delivered(tag);
  t.ready(2);
  t.ready(1);
  t.ready(3);
  std::size_t acked = 0;
  EXPECT_EQ(flush(t, &acked), (Sent{{3, true}}));
  EXPECT_EQ(acked, 3U);
  EXPECT_EQ(t.unsettled(), 2U);
  t.ready(4);
  EXPECT_EQ(flush(t), (Sent{{4, false}}));
  EXPECT_TRUE(flush(t).empty());  // nothing new
}

TEST(BrokerAckTracker, NeverCoversADeliveryStillInItsHandler) {
  detail::AckTracker t;
  for (std::uint64_t tag = 1; tag <= 6; ++tag) t.delivered(tag);
  // 3 is still running: 1-2 cumulatively, 4 and 6 one by one.
  t.ready(1);
  t.ready(2);
  t.ready(4);
  t.ready(6);
  EXPECT_EQ(flush(t), (Sent{{2, true}, {4, false}, {6, false}}));
  // 3 finishes: its cumulative ack passes over 4 (already acked), and must
  // not reach 5 (running) — so just 3.
  t.ready(3);
  EXPECT_EQ(flush(t), (Sent{{3, false}}));
  t.ready(5);
  EXPECT_EQ(flush(t), (Sent{{5, false}}));
  EXPECT_EQ(t.unsettled(), 0U);
}

TEST(BrokerAckTracker, RejectedAndDuplicateSettlementsAreSkipped) {
  detail::AckTracker t;
  for (std::uint64_t tag = 10; tag <= 13; ++tag) t.delivered(tag);  // any start
  t.done(10);                                                       // rejected (sent on its own)
  t.ready(11);
  t.ready(11);  // settled twice: acked once
  t.ready(99);  // unknown tag: ignored
  t.ready(13);
  EXPECT_EQ(flush(t), (Sent{{11, false}, {13, false}}));
  t.reset();  // new channel: old tags are void
  t.ready(12);
  EXPECT_TRUE(flush(t).empty());
}

TEST(BrokerAckTracker, TagsOutOfSequenceFallBackToSingleAcks) {
  detail::AckTracker t;
  t.delivered(1);
  t.delivered(2);
  t.delivered(5);
  t.ready(1);
  t.ready(2);
  t.ready(5);
  EXPECT_EQ(flush(t), (Sent{{1, false}, {2, false}, {5, false}}));
}

TEST(BrokerAckTracker, StopsWhenTheConnectionFails) {
  detail::AckTracker t;
  for (std::uint64_t tag = 1; tag <= 4; ++tag) t.delivered(tag);
  t.ready(1);
  t.ready(3);
  t.ready(4);
  int calls = 0;
  const auto n = t.flush([&](std::uint64_t, bool) {
    ++calls;
    t.reset();  // what fail_connection() does
    return false;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(n, 0U);
  EXPECT_EQ(t.unsettled(), 0U);
}

}  // namespace
}  // namespace sb::broker

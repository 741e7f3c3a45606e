// The reference plugins' domain logic (folds and decisions), without servers.
#include <gtest/gtest.h>

#include "switchboard/shared/json.hpp"
#include "switchboard/shop/inventory.hpp"
#include "switchboard/shop/notifications.hpp"
#include "switchboard/shop/orders.hpp"
#include "switchboard/shop/payments.hpp"

using namespace sb;

namespace {

events::Event event(const std::string& type, const std::string& data, std::int64_t version = 0) {
  return events::event_from_json(
      R"({"id":"0b8f2b8e-7d55-4d1c-9a5e-0c1f3a2b4c5d","type":")" + type +
      R"(","schema":1,"stream":"s-1","version":)" + std::to_string(version) +
      R"(,"position":7,"tenant":"acme","occurred_at":"2026-01-01T00:00:00.000Z","recorded_at":"2026-01-01T00:00:00.000Z","correlation_id":"c","data":)" +
      data + R"(,"meta":{}})");
}

std::string only_type(const sdk::Decision& d) {
  EXPECT_FALSE(d.refusal.has_value());
  EXPECT_EQ(d.events.size(), 1u);
  return d.events.empty() ? "" : d.events.front().type;
}

std::string field(const sdk::Decision& d, const char* key) {
  auto doc = json::parse(d.events.front().data);
  const auto& v = doc[key];
  return v.IsString() ? v.GetString() : json::to_string(v);
}

}  // namespace

TEST(Orders, PlaceOnceThenRefuse) {
  namespace o = shop::orders;
  o::Order order;
  const o::Place place{"o1", "sku", 2, true};
  auto d = o::decide_place(order, place);
  EXPECT_EQ(only_type(d), "shop.order.placed");
  EXPECT_EQ(field(d, "fail_payment"), "true");
  o::fold(order, event("shop.order.placed", d.events.front().data));
  EXPECT_EQ(order.status, "placed");
  EXPECT_EQ(order.qty, 2);
  auto again = o::decide_place(order, place);
  ASSERT_TRUE(again.refusal.has_value());
  EXPECT_EQ(again.refusal->status, 409);
}

TEST(Orders, SagaOutcomesApplyOnlyToAPlacedOrder) {
  namespace o = shop::orders;
  o::Order order;
  EXPECT_TRUE(o::decide_outcome(order, "shop.payment.captured", "e").events.empty());
  o::fold(order, event("shop.order.placed",
                       R"({"order_id":"o1","sku":"k","qty":1,"fail_payment":false})"));
  EXPECT_EQ(only_type(o::decide_outcome(order, "shop.payment.captured", "e")),
            "shop.order.confirmed");
  auto failed = o::decide_outcome(order, "shop.payment.failed", "e");
  EXPECT_EQ(only_type(failed), "shop.order.cancelled");
  EXPECT_EQ(field(failed, "reason"), "payment_failed");
  EXPECT_EQ(field(failed, "sku"), "k");
  EXPECT_EQ(field(o::decide_outcome(order, "shop.stock.unavailable", "e"), "reason"),
            "out_of_stock");
  o::fold(order, event("shop.order.confirmed", R"({"order_id":"o1"})", 1));
  EXPECT_TRUE(o::decide_outcome(order, "shop.payment.failed", "e").events.empty());
  EXPECT_EQ(o::order_stream("acme", "o1"), "order-acme-o1");
}

TEST(Inventory, ReservesWhileStockLastsAndReleasesOnlyAReservation) {
  namespace i = shop::inventory;
  i::Stock s;
  auto r1 = i::decide_reserve(s, 10, "k", "o1", 6, false);
  EXPECT_EQ(only_type(r1), "shop.stock.reserved");
  i::fold(s, event("shop.stock.reserved", r1.events.front().data));
  EXPECT_EQ(s.taken, 6);
  // Seen before: nothing (a redelivery or a second replica).
  EXPECT_TRUE(i::decide_reserve(s, 10, "k", "o1", 6, false).events.empty());
  auto r2 = i::decide_reserve(s, 10, "k", "o2", 5, false);
  EXPECT_EQ(only_type(r2), "shop.stock.unavailable");
  EXPECT_EQ(field(r2, "available"), "4");
  i::fold(s, event("shop.stock.unavailable", r2.events.front().data, 1));
  EXPECT_TRUE(i::decide_release(s, "k", "o2").events.empty());
  auto rel = i::decide_release(s, "k", "o1");
  EXPECT_EQ(only_type(rel), "shop.stock.released");
  EXPECT_EQ(field(rel, "qty"), "6");
  i::fold(s, event("shop.stock.released", rel.events.front().data, 2));
  EXPECT_EQ(s.taken, 0);
  EXPECT_TRUE(i::decide_release(s, "k", "o1").events.empty());
}

TEST(Payments, CapturesOrFailsOnce) {
  namespace p = shop::payments;
  p::Payment pay;
  auto ok = p::decide_capture(pay, "o1", 3000, false);
  EXPECT_EQ(only_type(ok), "shop.payment.captured");
  EXPECT_EQ(field(ok, "amount_cents"), "3000");
  EXPECT_EQ(only_type(p::decide_capture(pay, "o1", 3000, true)), "shop.payment.failed");
  p::fold(pay, event("shop.payment.captured", ok.events.front().data));
  EXPECT_EQ(pay.status, "captured");
  EXPECT_TRUE(p::decide_capture(pay, "o1", 3000, true).events.empty());
}

TEST(Notifications, MessagesForOrderEvents) {
  namespace n = shop::notifications;
  EXPECT_EQ(n::message_for(event("shop.order.confirmed", R"({"order_id":"o1"})")),
            "Your order o1 is confirmed.");
  EXPECT_EQ(
      n::message_for(event("shop.order.cancelled", R"({"order_id":"o1","reason":"out_of_stock"})")),
      "Your order o1 was cancelled (out_of_stock).");
  EXPECT_EQ(n::message_for(event("shop.order.shipped", R"({"order_id":"o1"})")), "");
}

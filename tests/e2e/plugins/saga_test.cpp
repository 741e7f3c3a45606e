// The four reference plugins on the real stack (issue 8, "Done when"): no
// plugins -> 404; start them -> their routes appear; an order placed through
// the edge runs the saga to confirmed (stock reserved, payment captured,
// notification recorded); a failing payment compensates (order cancelled,
// stock released); too little stock cancels; SIGKILL of orders -> 503, and
// started again it catches up with nothing lost; three orders instances share
// the requests; with three replicas of orders, inventory and payments, 200
// concurrent orders end exactly as one replica would leave them.
#include <atomic>
#include <set>
#include <thread>

#include "../edge/edge_stack.hpp"
#include "switchboard/shared/pg.hpp"

using namespace sb;
using namespace sb::edgetest;

namespace {

class SagaE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { stack_ = new Stack(); }
  static void TearDownTestSuite() {
    plugins_.clear();
    delete stack_;
    stack_ = nullptr;
  }

  static Proc& start_plugin(const std::string& name, std::string binary = "") {
    std::map<std::string, std::string> env{
        {"SB_POSTGRES_URL", stack_->db}, {"SB_RABBITMQ_URL", stack_->amqp}, {"SB_HTTP_PORT", "0"}};
    // The saga's subscriptions in 3 partitions: with 3 replicas each
    // partition has its own owner, so the steps really run in parallel.
    if (binary.empty()) {
      binary = "services/" + name + "/sb-" + name;
      if (name != "notifications") env["SB_SHOP_PARTITIONS"] = "3";
    }
    plugins_.push_back(std::make_unique<Proc>("sb-" + name, binary, std::move(env)));
    return *plugins_.back();
  }

  /// Live instances of name@1.0.0 in the edge's route table.
  static std::size_t instances(const std::string& name) {
    Http h(stack_->edge_port);
    auto r = h.get("/api/v1/services", bearer(stack_->admin_token()));
    if (r.status != 200) return 0;
    auto d = r.json();
    for (const auto& s : d["services"].GetArray()) {
      if (name != s["name"].GetString()) continue;
      for (const auto& v : s["versions"].GetArray()) {
        if (std::string("1.0.0") == v["version"].GetString()) return v["instances"].Size();
      }
    }
    return 0;
  }

  static std::int64_t scalar(const pg::Sql& sql, const pg::Params& params) {
    pg::ConnectOptions o;
    o.url = stack_->db;
    pg::Connection c(o);
    auto tx = c.begin();
    return tx.exec(sql, params).one()[0].get<std::int64_t>();
  }

  Http http() { return Http(stack_->edge_port); }
  static std::map<std::string, std::string> user(std::map<std::string, std::string> extra = {}) {
    auto h = bearer(token("alice", "acme", {"user"}));
    h.insert(extra.begin(), extra.end());
    return h;
  }

  static std::string unique_id(const char* prefix) {
    auto n = tst::unique_name(prefix);
    for (auto& c : n) {
      if (c == '_') c = '-';
    }
    return n;
  }

  // Places an order through the edge; the command's position.
  std::int64_t place(const std::string& id, const std::string& sku, std::int64_t qty,
                     bool fail_payment = false) {
    auto h = http();
    auto r = h.post("/api/v1/commands/orders/place",
                    R"({"order_id":")" + id + R"(","sku":")" + sku + R"(","qty":)" +
                        std::to_string(qty) + (fail_payment ? R"(,"fail_payment":true})" : "}"),
                    user());
    EXPECT_EQ(r.status, 201) << r.body;
    if (r.status != 201) return 0;
    return r.json()["position"].GetInt64();
  }

  // Waits until GET /api/orders/orders/{id} says `status`; the last answer.
  Response wait_status(const std::string& id, const std::string& status) {
    Response last;
    const bool reached = tst::wait_until(
        [&] {
          auto h = http();
          last = h.get("/api/orders/orders/" + id, user());
          return last.status == 200 && status == last.json()["status"].GetString();
        },
        30s, 50ms);
    EXPECT_TRUE(reached) << "order " << id << " never became " << status << ": " << last.status
                         << " " << last.body;
    return last;
  }

  rapidjson::Document stock(const std::string& sku) {
    auto h = http();
    auto r = h.get("/api/inventory/stock/" + sku, user());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json();
  }

  static std::string reservation_status(const rapidjson::Document& s, const std::string& order) {
    for (const auto& r : s["reservations"].GetArray()) {
      if (order == r["order_id"].GetString()) return r["status"].GetString();
    }
    return "";
  }

  static Stack* stack_;
  static std::vector<std::unique_ptr<Proc>> plugins_;
};
Stack* SagaE2E::stack_ = nullptr;
std::vector<std::unique_ptr<Proc>> SagaE2E::plugins_;

}  // namespace

TEST_F(SagaE2E, A_WithoutPluginsTheirRoutesAre404) {
  auto h = http();
  auto r = h.get("/api/orders/orders/nope", user());
  EXPECT_EQ(r.status, 404) << r.body;
  auto c = h.post("/api/v1/commands/orders/place", R"({"order_id":"x","sku":"s","qty":1})", user());
  EXPECT_EQ(c.status, 404) << c.body;
}

TEST_F(SagaE2E, B_StartedPluginsAppearInTheRoutes) {
  for (const auto* name : {"orders", "inventory", "payments", "notifications"}) {
    start_plugin(name);
  }
  for (const auto* name : {"orders", "inventory", "payments", "notifications"}) {
    EXPECT_TRUE(tst::wait_until([&] { return stack_->routes_to(name, "1.0.0"); }, 20s, 50ms))
        << name << " never appeared in the edge's routes";
  }
  auto h = http();
  auto r = h.get("/api/orders/orders/nope", user());
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.error_code(), "not_found") << r.body;  // the plugin's 404 now
}

TEST_F(SagaE2E, C_AnOrderIsConfirmedWithStockReservedAndANotification) {
  const auto id = unique_id("ok");
  const auto sku = unique_id("sku");
  const auto position = place(id, sku, 3);
  ASSERT_GT(position, 0);

  // Read-your-writes: with X-Min-Position the read model knows the order.
  auto h = http();
  auto seen =
      h.get("/api/orders/orders/" + id, user({{"X-Min-Position", std::to_string(position)}}));
  ASSERT_EQ(seen.status, 200) << seen.body;

  auto done = wait_status(id, "confirmed");
  ASSERT_EQ(done.status, 200);
  auto d = done.json();
  ASSERT_TRUE(d["history"].IsArray()) << done.body;
  ASSERT_EQ(d["history"].Size(), 2u) << done.body;
  EXPECT_EQ(std::string(d["history"][0]["status"].GetString()), "placed");
  EXPECT_EQ(std::string(d["history"][1]["status"].GetString()), "confirmed");

  auto s = stock(sku);
  EXPECT_EQ(s["available"].GetInt64(), 97) << json::to_string(s);
  EXPECT_EQ(s["reserved"].GetInt64(), 3) << json::to_string(s);
  EXPECT_EQ(reservation_status(s, id), "reserved") << json::to_string(s);

  auto p = h.get("/api/payments/payments/" + id, user());
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(std::string(p.json()["status"].GetString()), "captured");

  Response n;
  EXPECT_TRUE(tst::wait_until(
      [&] {
        auto hh = http();
        n = hh.get("/api/notifications/notifications?order_id=" + id, user());
        return n.status == 200 && n.body.find("is confirmed") != std::string::npos &&
               n.json()["notifications"].Size() == 2;
      },
      30s, 50ms))
      << n.status << " " << n.body;

  auto list = h.get("/api/orders/orders?limit=1", user());
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.json()["orders"].Size(), 1u) << list.body;
}

TEST_F(SagaE2E, D_AFailingPaymentCancelsTheOrderAndReleasesTheStock) {
  const auto id = unique_id("fail");
  const auto sku = unique_id("sku");
  ASSERT_GT(place(id, sku, 5, true), 0);
  auto done = wait_status(id, "cancelled");
  ASSERT_EQ(done.status, 200);
  EXPECT_EQ(std::string(done.json()["reason"].GetString()), "payment_failed") << done.body;

  rapidjson::Document s;
  EXPECT_TRUE(tst::wait_until(
      [&] {
        s = stock(sku);
        return reservation_status(s, id) == "released";
      },
      30s, 50ms))
      << json::to_string(s);
  EXPECT_EQ(s["available"].GetInt64(), 100) << json::to_string(s);
  EXPECT_EQ(s["reserved"].GetInt64(), 0) << json::to_string(s);

  auto h = http();
  auto p = h.get("/api/payments/payments/" + id, user());
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(std::string(p.json()["status"].GetString()), "failed");
  Response n;
  EXPECT_TRUE(tst::wait_until(
      [&] {
        auto hh = http();
        n = hh.get("/api/notifications/notifications?order_id=" + id, user());
        return n.status == 200 && n.body.find("cancelled (payment_failed)") != std::string::npos;
      },
      30s, 50ms))
      << n.status << " " << n.body;
}

TEST_F(SagaE2E, E_TooLittleStockCancelsWithoutAReservation) {
  const auto id = unique_id("big");
  const auto sku = unique_id("sku");
  ASSERT_GT(place(id, sku, 101), 0);
  auto done = wait_status(id, "cancelled");
  ASSERT_EQ(done.status, 200);
  EXPECT_EQ(std::string(done.json()["reason"].GetString()), "out_of_stock") << done.body;
  auto s = stock(sku);
  EXPECT_EQ(s["available"].GetInt64(), 100);
  EXPECT_EQ(reservation_status(s, id), "unavailable");
}

TEST_F(SagaE2E, F_PlacingTheSameOrderIdTwiceIsRefused) {
  const auto id = unique_id("dup");
  ASSERT_GT(place(id, "sku-dup", 1), 0);
  auto h = http();
  auto r = h.post("/api/v1/commands/orders/place",
                  R"({"order_id":")" + id + R"(","sku":"sku-dup","qty":1})", user());
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.error_code(), "order_exists") << r.body;
}

TEST_F(SagaE2E, G_KilledOrdersIs503AndStartedAgainLosesNothing) {
  ASSERT_FALSE(plugins_.empty());
  const auto id = unique_id("kill");
  const auto sku = unique_id("sku");
  ASSERT_GT(place(id, sku, 2), 0);
  plugins_.front()->kill9();  // orders, whatever the saga had reached
  Response r;
  EXPECT_TRUE(tst::wait_until(
      [&] {
        auto h = http();
        r = h.get("/api/orders/orders/" + id, user({{"X-Request-Timeout", "1000"}}));
        return r.status == 503;
      },
      30s, 100ms))
      << r.status << " " << r.body;
  // Inventory and payments went on meanwhile; orders catches up on restart.
  EXPECT_TRUE(tst::wait_until(
      [&] {
        return scalar("SELECT count(*) FROM events WHERE stream = $1", {"payment-acme-" + id}) == 1;
      },
      30s, 50ms));
  start_plugin("orders");
  ASSERT_TRUE(tst::wait_until([&] { return stack_->routes_to("orders", "1.0.0"); }, 20s, 50ms));
  auto done = wait_status(id, "confirmed");
  ASSERT_EQ(done.status, 200);
  EXPECT_EQ(done.json()["history"].Size(), 2u) << done.body;
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE stream = $1", {"order-acme-" + id}), 2);
  const auto again = unique_id("after");
  ASSERT_GT(place(again, sku, 1), 0);
  wait_status(again, "confirmed");
}

TEST_F(SagaE2E, H_ThreeOrdersInstancesShareTheRequests) {
  start_plugin("orders");
  start_plugin("orders");
  ASSERT_TRUE(tst::wait_until([&] { return instances("orders") == 3; }, 20s, 50ms))
      << instances("orders") << " orders instances routed";
  const auto id = unique_id("spread");
  const auto position = place(id, "sku-spread", 1);
  ASSERT_GT(position, 0);
  wait_status(id, "confirmed");
  std::set<std::string> answered;
  auto h = http();
  for (int i = 0; i < 90 && answered.size() < 3; ++i) {
    // Every instance's read model has the order at this position.
    auto r =
        h.get("/api/orders/orders/" + id, user({{"X-Min-Position", std::to_string(position)}}));
    ASSERT_EQ(r.status, 200) << r.body;
    auto instance = r.header("x-instance");
    if (instance.empty()) instance = r.header("X-Instance");
    ASSERT_FALSE(instance.empty()) << "no X-Instance header";
    answered.insert(instance);
  }
  EXPECT_EQ(answered.size(), 3u);
}

TEST_F(SagaE2E, I_ThreeReplicasEachEnd200ConcurrentOrdersAsOneWould) {
  for (const auto* name : {"inventory", "inventory", "payments", "payments"}) start_plugin(name);
  ASSERT_TRUE(tst::wait_until(
      [&] {
        return instances("orders") == 3 && instances("inventory") == 3 &&
               instances("payments") == 3;
      },
      20s, 50ms));
  for (const auto* sub : {"orders.saga", "inventory.stock", "payments.capture"}) {
    EXPECT_EQ(scalar("SELECT count(*) FROM subscription_checkpoints WHERE name = $1", {sub}), 3)
        << sub;
  }
  constexpr int kOrders = 200;
  constexpr int kThreads = 8;
  const auto prefix = unique_id("c");
  std::vector<std::string> skus;
  for (int i = 0; i < 5; ++i) skus.push_back(unique_id("sku"));
  auto order_id = [&](int i) { return prefix + "-" + std::to_string(i); };
  auto sku_of = [&](int i) { return skus[static_cast<std::size_t>(i % 5)]; };
  auto qty_of = [](int i) { return 1 + i % 2; };
  auto fails = [](int i) { return i % 7 == 0; };
  std::atomic<int> placed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Http h(stack_->edge_port);
      for (int i = t; i < kOrders; i += kThreads) {
        auto r =
            h.post("/api/v1/commands/orders/place",
                   R"({"order_id":")" + order_id(i) + R"(","sku":")" + sku_of(i) + R"(","qty":)" +
                       std::to_string(qty_of(i)) + (fails(i) ? R"(,"fail_payment":true})" : "}"),
                   user());
        if (r.status == 201) placed.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(placed.load(), kOrders);
  const std::string like = prefix + "-%";
  EXPECT_TRUE(tst::wait_until(
      [&] {
        return scalar(
                   "SELECT count(*) FROM orders_orders WHERE tenant = 'acme' AND order_id "
                   "LIKE $1 AND status IN ('confirmed', 'cancelled')",
                   {like}) == kOrders;
      },
      90s, 100ms))
      << "not every order finished";
  // Let the releases of the failed ones land too.
  const std::int64_t failed = (kOrders + 6) / 7;
  EXPECT_TRUE(tst::wait_until(
      [&] {
        return scalar(
                   "SELECT count(*) FROM events WHERE type = 'shop.stock.released' AND "
                   "data->>'order_id' LIKE $1",
                   {like}) == failed;
      },
      60s, 100ms));

  std::map<std::string, std::int64_t> confirmed_qty;
  std::map<std::string, std::int64_t> orders_on;
  for (int i = 0; i < kOrders; ++i) {
    orders_on[sku_of(i)] += 1;
    if (!fails(i)) confirmed_qty[sku_of(i)] += qty_of(i);
    const auto status = scalar(
        "SELECT CASE status WHEN 'confirmed' THEN 1 ELSE 0 END FROM orders_orders "
        "WHERE tenant = 'acme' AND order_id = $1",
        {order_id(i)});
    EXPECT_EQ(status, fails(i) ? 0 : 1) << order_id(i);
    // Exactly once: placed + one outcome; one payment decision.
    EXPECT_EQ(
        scalar("SELECT count(*) FROM events WHERE stream = $1", {"order-acme-" + order_id(i)}), 2)
        << order_id(i);
    EXPECT_EQ(
        scalar("SELECT count(*) FROM events WHERE stream = $1", {"payment-acme-" + order_id(i)}), 1)
        << order_id(i);
  }
  std::map<std::string, std::int64_t> failed_on;
  for (int i = 0; i < kOrders; ++i) {
    if (fails(i)) failed_on[sku_of(i)] += 1;
  }
  for (const auto& sku : skus) {
    auto s = stock(sku);
    EXPECT_EQ(s["available"].GetInt64(), 100 - confirmed_qty[sku]) << json::to_string(s);
    EXPECT_EQ(s["reserved"].GetInt64(), confirmed_qty[sku]) << json::to_string(s);
    // One reservation per order plus one release per failed payment.
    EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE stream = $1", {"stock-acme-" + sku}),
              orders_on[sku] + failed_on[sku])
        << sku;
  }
}

TEST_F(SagaE2E, J_TheTemplatePluginIsRoutedAndItsSubscriptionCounts) {
  start_plugin("hello", "services/sdk/template/sb-hello");
  ASSERT_TRUE(tst::wait_until([&] { return stack_->routes_to("hello", "1.0.0"); }, 20s, 50ms));
  Response r;
  EXPECT_TRUE(tst::wait_until(
      [&] {
        auto h = http();
        r = h.get("/api/hello/seen/shop.order.placed", user());
        return r.status == 200 && r.json()["seen"].GetInt64() > 0;
      },
      30s, 50ms))
      << r.status << " " << r.body;
}

TEST_F(SagaE2E, K_SigtermDrainsPluginsWithReactionsAndUnroutesThem) {
  // hello (checkpointed reaction) and notifications (push reaction).
  Proc& hello = *plugins_.back();
  hello.term();
  EXPECT_FALSE(hello.running());
  EXPECT_TRUE(tst::wait_until([&] { return !stack_->routes_to("hello", "1.0.0"); }, 10s, 50ms));
  Proc& notifications = *plugins_[3];
  notifications.term();
  EXPECT_FALSE(notifications.running());
  EXPECT_TRUE(
      tst::wait_until([&] { return !stack_->routes_to("notifications", "1.0.0"); }, 10s, 50ms));
  auto h = http();
  // Known to the edge, no live instance: 503 (as for any unplugged service).
  auto r = h.get("/api/notifications/notifications", user());
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.error_code(), "no_live_instance") << r.body;
}

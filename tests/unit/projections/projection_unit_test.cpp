// The projection model without servers: table names per generation, DDL
// placeholders, name rules, the builder, fingerprints.
#include <gtest/gtest.h>

#include "switchboard/projections/projection.hpp"
#include "switchboard/projections/runner.hpp"

namespace sb::projections {
namespace {

events::HandleResult noop(pg::Transaction&, const Tables&, const events::Event&) {
  return events::HandleResult::handled;
}

ProjectionBuilder orders() {
  ProjectionBuilder b("shop");
  b.table("orders")
      .table("order_lines")
      .schema("CREATE TABLE {orders} (id text PRIMARY KEY, status text NOT NULL)")
      .schema("CREATE INDEX {orders}_status ON {orders} (status)")
      .on("shop.order.placed", noop)
      .on("shop.order.shipped", noop);
  return b;
}

TEST(Tables, PhysicalNamesCarryTheGenerationViewsDoNot) {
  Tables t("registry", 3);
  EXPECT_EQ(t("services"), "registry_services__g3");
  EXPECT_EQ(t.view("services"), "registry_services");
  EXPECT_EQ(t.generation(), 3);
  EXPECT_EQ(t.projection(), "registry");
}

TEST(Expand, ReplacesKnownPlaceholdersOnly) {
  Tables t("shop", 2);
  const std::vector<std::string> tables{"orders", "order_lines"};
  EXPECT_EQ(expand("CREATE INDEX {orders}_status ON {orders} (status)", t, tables),
            "CREATE INDEX shop_orders__g2_status ON shop_orders__g2 (status)");
  EXPECT_EQ(expand("SELECT '{unknown}', '{' || '}' FROM {order_lines}", t, tables),
            "SELECT '{unknown}', '{' || '}' FROM shop_order_lines__g2");
  EXPECT_EQ(expand("{orders", t, tables), "{orders");
  EXPECT_EQ(expand("", t, tables), "");
}

TEST(Names, ProjectionAndTableRules) {
  EXPECT_TRUE(is_valid_projection_name("registry"));
  EXPECT_TRUE(is_valid_projection_name("a1_b2"));
  EXPECT_FALSE(is_valid_projection_name(""));
  EXPECT_FALSE(is_valid_projection_name("1abc"));
  EXPECT_FALSE(is_valid_projection_name("Registry"));
  EXPECT_FALSE(is_valid_projection_name("a__b"));
  EXPECT_FALSE(is_valid_projection_name("a-b"));
  EXPECT_FALSE(is_valid_projection_name("a_"));
  EXPECT_FALSE(is_valid_projection_name(std::string(41, 'a')));
  EXPECT_TRUE(is_valid_table_name("registry", "service_instances"));
  EXPECT_FALSE(is_valid_table_name("registry", "x__y"));
  // "<projection>_<table>__g999999" must fit in 63 bytes.
  EXPECT_TRUE(is_valid_table_name(std::string(20, 'p'), std::string(33, 't')));
  EXPECT_FALSE(is_valid_table_name(std::string(20, 'p'), std::string(34, 't')));
}

TEST(Builder, BuildsAProjectionThatListsItsTypesTablesAndSchema) {
  auto p = orders().build();
  EXPECT_EQ(p->name(), "shop");
  EXPECT_EQ(p->version(), 1);
  EXPECT_EQ(p->tables(), (std::vector<std::string>{"orders", "order_lines"}));
  EXPECT_EQ(p->event_types(),
            (std::vector<std::string>{"shop.order.placed", "shop.order.shipped"}));
  const auto ddl = p->schema(Tables("shop", 7));
  ASSERT_EQ(ddl.size(), 2u);
  EXPECT_EQ(ddl[0], "CREATE TABLE shop_orders__g7 (id text PRIMARY KEY, status text NOT NULL)");
}

TEST(Builder, RejectsBadNamesAndMissingTables) {
  EXPECT_THROW(ProjectionBuilder("Bad").table("t").build(), Error);
  EXPECT_THROW(ProjectionBuilder("ok").build(), Error);
  EXPECT_THROW(ProjectionBuilder("ok").table("a__b").build(), Error);
  EXPECT_THROW(ProjectionBuilder("ok").table("t").table("t").build(), Error);
}

TEST(Fingerprint, StableAndSensitiveToWhatFixesAGeneration) {
  const auto base = fingerprint(*orders().build());
  EXPECT_EQ(base.size(), 16u);
  EXPECT_EQ(fingerprint(*orders().build()), base);
  EXPECT_NE(fingerprint(*orders().version(2).build()), base);
  EXPECT_NE(fingerprint(*orders().table("extra").build()), base);
  EXPECT_NE(fingerprint(*orders().on("shop.order.cancelled", noop).build()), base);
  EXPECT_NE(fingerprint(*orders().schema("CREATE INDEX ON {orders} (id, status)").build()), base);
}

TEST(Runner, SubscriptionNamesPerGeneration) {
  EXPECT_EQ(subscription_name("registry", 4), "projection.registry.g4");
  EXPECT_TRUE(events::is_valid_subscription_name(subscription_name(std::string(40, 'a'), 999999)));
}

TEST(Runner, RejectsOptionsItCannotRun) {
  RunnerOptions o;
  EXPECT_THROW(ProjectionRunner(orders().build(), o), Error) << "no store pool";
  EXPECT_THROW(ProjectionRunner(nullptr, o), Error);
}

}  // namespace
}  // namespace sb::projections

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <thread>

#include "switchboard/events/uuid.hpp"

using namespace sb::events;

namespace {
const std::regex kCanonical("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");
}

TEST(Uuid, ParseAndFormat) {
  const auto id = Uuid::parse("6BA7B810-9dad-11d1-80B4-00c04fd430c8");
  EXPECT_EQ(id, kNamespaceDns);
  EXPECT_EQ(id.to_string(), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
  EXPECT_EQ(id.version(), 1);
  EXPECT_TRUE(Uuid().is_nil());
  EXPECT_EQ(Uuid().to_string(), "00000000-0000-0000-0000-000000000000");
  for (const char* bad :
       {"", "6ba7b810-9dad-11d1-80b4-00c04fd430c", "6ba7b810-9dad-11d1-80b4-00c04fd430c80",
        "6ba7b8109dad11d180b400c04fd430c8", "6ba7b810-9dad-11d1-80b4_00c04fd430c8",
        "6ba7b810-9dad-11d1-80b4-00c04fd430cg", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
        "6ba7b81-09dad-11d1-80b4-00c04fd430c8"}) {
    EXPECT_FALSE(Uuid::try_parse(bad).has_value()) << bad;
    EXPECT_THROW(Uuid::parse(bad), InvalidValue) << bad;
  }
}

TEST(Uuid, V4IsRandomWithVersionAndVariant) {
  std::set<Uuid> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto id = uuid_v4();
    EXPECT_EQ(id.version(), 4);
    EXPECT_TRUE(id.is_rfc_variant());
    EXPECT_TRUE(std::regex_match(id.to_string(), kCanonical));
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Uuid, V5KnownVectors) {
  // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
  EXPECT_EQ(uuid_v5(kNamespaceDns, "python.org").to_string(),
            "886313e1-3b8a-5372-9b90-0c9aee199e5d");
  // RFC 9562 appendix A.4: uuid5(NAMESPACE_DNS, "www.example.com")
  EXPECT_EQ(uuid_v5(kNamespaceDns, "www.example.com").to_string(),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2");
  const auto id = uuid_v5(kNamespaceUrl, "https://example.com/");
  EXPECT_EQ(id.version(), 5);
  EXPECT_TRUE(id.is_rfc_variant());
  EXPECT_EQ(id, uuid_v5(kNamespaceUrl, "https://example.com/"));
  EXPECT_NE(id, uuid_v5(kNamespaceDns, "https://example.com/"));
}

TEST(Uuid, V7IsTimeOrderedAndCarriesItsTime) {
  const auto before = now_ms();
  std::vector<Uuid> ids;
  for (int i = 0; i < 20000; ++i) ids.push_back(uuid_v7());
  const auto after = now_ms();
  for (std::size_t i = 1; i < ids.size(); ++i) {
    // Strictly increasing as bytes and as text, even within one millisecond.
    ASSERT_LT(ids[i - 1], ids[i]) << i;
    ASSERT_LT(ids[i - 1].to_string(), ids[i].to_string()) << i;
  }
  EXPECT_EQ(ids.front().version(), 7);
  EXPECT_TRUE(ids.front().is_rfc_variant());
  const auto t = uuid_v7_time(ids.front());
  ASSERT_TRUE(t.has_value());
  EXPECT_GE(*t, before);
  // The counter may borrow a few milliseconds from the future under load.
  EXPECT_LE(*uuid_v7_time(ids.back()), after + std::chrono::seconds(5));
  EXPECT_FALSE(uuid_v7_time(uuid_v4()).has_value());
}

TEST(Uuid, V7AtGivenTime) {
  const auto at = parse_rfc3339("2026-11-22T08:00:01.123Z");
  const auto id = uuid_v7_at(at);
  EXPECT_EQ(id.version(), 7);
  EXPECT_EQ(uuid_v7_time(id), at);
  EXPECT_EQ(id.to_string().substr(0, 13), "01a20244-ec63");
}

TEST(Uuid, V7IsUniqueAcrossThreads) {
  std::vector<std::vector<Uuid>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& out : per_thread) {
    threads.emplace_back([&out] {
      for (int i = 0; i < 5000; ++i) out.push_back(uuid_v7());
    });
  }
  for (auto& t : threads) t.join();
  std::set<Uuid> all;
  for (const auto& ids : per_thread) all.insert(ids.begin(), ids.end());
  EXPECT_EQ(all.size(), 20000u);
}

TEST(Uuid, DerivedEventIdsAreDeterministic) {
  const TenantId acme("acme");
  const CommandId cmd("order-42");
  const auto first = derive_event_id(acme, cmd, 0);
  EXPECT_EQ(first, derive_event_id(acme, cmd, 0));  // a retry derives the same id
  EXPECT_NE(first, derive_event_id(acme, cmd, 1));
  EXPECT_NE(first, derive_event_id(TenantId("globex"), cmd, 0));
  EXPECT_NE(first, derive_event_id(acme, CommandId("order-43"), 0));
  EXPECT_EQ(Uuid::parse(first.value()).version(), 5);
  // Pinned: derived ids must never change between releases, or a command
  // retried across an upgrade would apply twice.
  EXPECT_EQ(first.value(), uuid_v5(kEventIdNamespace, "acme/order-42/0").to_string());
  EXPECT_EQ(first.value(), "607f671f-d1f0-5860-b322-9def4061e1d4");
}

TEST(Uuid, NewEventIdsAreV7) {
  const auto a = new_event_id();
  const auto b = new_event_id();
  EXPECT_LT(a, b);
  EXPECT_EQ(Uuid::parse(a.value()).version(), 7);
}

#include <gtest/gtest.h>

#include <type_traits>
#include <unordered_set>

#include "switchboard/events/types.hpp"

using namespace sb::events;

TEST(Types, DistinctTypesDoNotConvert) {
  static_assert(!std::is_convertible_v<StreamId, TenantId>);
  static_assert(!std::is_convertible_v<std::string, StreamId>);
  static_assert(!std::is_convertible_v<Position, StreamVersion>);
  static_assert(!std::is_convertible_v<std::int64_t, Position>);
  static_assert(!std::is_same_v<CorrelationId, CausationId>);
  SUCCEED();
}

TEST(Types, EventTypeSegments) {
  EXPECT_NO_THROW(EventType("identity.user.registered"));
  EXPECT_NO_THROW(EventType("billing.invoice-line.added_v2"));
  EXPECT_NO_THROW(EventType("a.b.c.d"));
  // Two segments are reserved for transient signals (the catalog checks stored types).
  EXPECT_NO_THROW(EventType("service.heartbeat"));
  for (const char* bad : {"", "identity", "identity.User.registered", "identity..registered",
                          ".identity.user", "identity.user.", "identity.user registered",
                          "identity.user.régistered", "identity/user/registered"}) {
    EXPECT_THROW(EventType{bad}, InvalidValue) << bad;
    EXPECT_FALSE(EventType::is_valid(bad)) << bad;
  }
  EXPECT_THROW(EventType(std::string(130, 'a') + "." + std::string(130, 'b')), InvalidValue);
  try {
    EventType("Identity.user.registered");
    FAIL();
  } catch (const InvalidValue& e) {
    EXPECT_NE(std::string(e.what()).find("event type"), std::string::npos);
  }
}

TEST(Types, CommandName) {
  EXPECT_NO_THROW(CommandName("identity.register_user"));
  EXPECT_THROW(CommandName("identity"), InvalidValue);
  EXPECT_THROW(CommandName("identity.user.register"), InvalidValue);
  EXPECT_THROW(CommandName("identity.Register"), InvalidValue);
}

TEST(Types, StreamId) {
  EXPECT_NO_THROW(StreamId("user-4f1c"));
  EXPECT_NO_THROW(StreamId(std::string(200, 's')));
  EXPECT_THROW(StreamId(std::string(201, 's')), InvalidValue);
  EXPECT_THROW(StreamId(""), InvalidValue);
  EXPECT_THROW(StreamId("user 1"), InvalidValue);
  EXPECT_THROW(StreamId("user\n1"), InvalidValue);
  EXPECT_THROW(StreamId(std::string("user\0", 5)), InvalidValue);
  EXPECT_THROW(StreamId("utilisateur-é"), InvalidValue);
}

TEST(Types, TenantId) {
  EXPECT_NO_THROW(TenantId("acme"));
  EXPECT_NO_THROW(TenantId("acme-eu_2"));
  EXPECT_NO_THROW(TenantId(std::string(63, 't')));
  EXPECT_THROW(TenantId(std::string(64, 't')), InvalidValue);
  EXPECT_THROW(TenantId(""), InvalidValue);
  EXPECT_THROW(TenantId("Acme"), InvalidValue);
  EXPECT_THROW(TenantId("acme.eu"), InvalidValue);
  EXPECT_TRUE(is_reserved_tenant(system_tenant()));
  EXPECT_FALSE(is_reserved_tenant(TenantId("acme")));
}

TEST(Types, EventIdIsACanonicalUuid) {
  EventId id("6BA7B810-9DAD-11D1-80B4-00C04FD430C8");
  EXPECT_EQ(id.value(), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
  EXPECT_EQ(id, EventId("6ba7b810-9dad-11d1-80b4-00c04fd430c8"));
  EXPECT_THROW(EventId("not-a-uuid"), InvalidValue);
  EXPECT_THROW(EventId("{6ba7b810-9dad-11d1-80b4-00c04fd430c8}"), InvalidValue);
}

TEST(Types, FreeFormIds) {
  EXPECT_NO_THROW(CommandId("order-42:retry"));
  EXPECT_NO_THROW(ActorId("user:4f1c"));
  EXPECT_THROW(CommandId(""), InvalidValue);
  EXPECT_THROW(CommandId(std::string(256, 'k')), InvalidValue);
  EXPECT_THROW(CorrelationId("has space"), InvalidValue);
  EXPECT_EQ(caused_by(CommandId("c-1")).value(), "c-1");
}

TEST(Types, TryMakeComparisonAndHashing) {
  EXPECT_FALSE(StreamId::try_make("").has_value());
  ASSERT_TRUE(StreamId::try_make("a").has_value());
  EXPECT_EQ(EventId::try_make("6BA7B810-9DAD-11D1-80B4-00C04FD430C8")->value(),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
  EXPECT_LT(StreamId("a"), StreamId("b"));
  std::unordered_set<StreamId> set{StreamId("a"), StreamId("b"), StreamId("a")};
  EXPECT_EQ(set.size(), 2u);
  std::unordered_set<Position> positions{Position(1), Position(2), Position(1)};
  EXPECT_EQ(positions.size(), 2u);
}

TEST(Types, IntegerWrappers) {
  EXPECT_EQ(Position().value(), 0);
  EXPECT_EQ(Position(41).next(), Position(42));
  EXPECT_LT(StreamVersion(1), StreamVersion(2));
  EXPECT_THROW(Position(-1), InvalidValue);
  EXPECT_THROW(StreamVersion(-1), InvalidValue);
}

TEST(Types, ExpectedVersionMatches) {
  const std::optional<StreamVersion> none;
  const std::optional<StreamVersion> at3 = StreamVersion(3);
  EXPECT_TRUE(ExpectedVersion::any().matches(none));
  EXPECT_TRUE(ExpectedVersion::any().matches(at3));
  EXPECT_TRUE(ExpectedVersion::no_stream().matches(none));
  EXPECT_FALSE(ExpectedVersion::no_stream().matches(at3));
  EXPECT_FALSE(ExpectedVersion::stream_exists().matches(none));
  EXPECT_TRUE(ExpectedVersion::stream_exists().matches(at3));
  EXPECT_TRUE(ExpectedVersion::exact(StreamVersion(3)).matches(at3));
  EXPECT_FALSE(ExpectedVersion::exact(StreamVersion(2)).matches(at3));
  EXPECT_FALSE(ExpectedVersion::exact(StreamVersion(0)).matches(none));
  EXPECT_EQ(ExpectedVersion::exact(StreamVersion(3)).version(), StreamVersion(3));
  EXPECT_FALSE(ExpectedVersion::any().version().has_value());
}

TEST(Types, ExpectedVersionText) {
  for (auto v :
       {ExpectedVersion::any(), ExpectedVersion::no_stream(), ExpectedVersion::stream_exists(),
        ExpectedVersion::exact(StreamVersion(0)), ExpectedVersion::exact(StreamVersion(17))}) {
    EXPECT_EQ(ExpectedVersion::parse(v.to_string()), v) << v;
  }
  EXPECT_EQ(ExpectedVersion::exact(StreamVersion(17)).to_string(), "17");
  for (const char* bad : {"", "-1", "3x", "ANY", " 3"}) {
    EXPECT_THROW(ExpectedVersion::parse(bad), InvalidValue) << bad;
  }
}

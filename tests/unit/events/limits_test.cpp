#include <gtest/gtest.h>

#include "switchboard/events/envelope.hpp"
#include "switchboard/events/limits.hpp"
#include "switchboard/events/uuid.hpp"

using namespace sb::events;

namespace {
NewEvent event_with_data_bytes(std::size_t bytes) {
  // {"s":"..."} is 8 bytes of framing.
  return NewEvent{.id = new_event_id(),
                  .type = EventType("test.blob.stored"),
                  .data = Payload::parse(R"({"s":")" + std::string(bytes - 8, 'x') + R"("})"),
                  .meta = Payload(),
                  .occurred_at = now_ms()};
}
}  // namespace

TEST(Limits, EventDataAtAndOverTheLimit) {
  const auto at_limit = event_with_data_bytes(kMaxEventDataBytes);
  EXPECT_EQ(at_limit.data.size_bytes(), kMaxEventDataBytes);
  EXPECT_FALSE(check_limits(at_limit).has_value());
  const auto over = check_limits(event_with_data_bytes(kMaxEventDataBytes + 1));
  ASSERT_TRUE(over.has_value());
  EXPECT_EQ(over->limit, kMaxEventDataBytes);
  EXPECT_EQ(over->actual, kMaxEventDataBytes + 1);
  EXPECT_NE(over->message().find("event data"), std::string::npos);
}

TEST(Limits, Meta) {
  auto event = event_with_data_bytes(16);
  event.meta = Payload::parse(R"({"m":")" + std::string(kMaxEventMetaBytes, 'm') + R"("})");
  ASSERT_TRUE(check_limits(event).has_value());
  EXPECT_NE(check_limits(event)->what.find("meta"), std::string::npos);
}

TEST(Limits, AppendCountAndTotal) {
  std::vector<NewEvent> events(kMaxEventsPerAppend, event_with_data_bytes(16));
  EXPECT_FALSE(check_append_limits(events).has_value());
  events.push_back(event_with_data_bytes(16));
  ASSERT_TRUE(check_append_limits(events).has_value());
  EXPECT_EQ(check_append_limits(events)->limit, kMaxEventsPerAppend);

  const auto big = event_with_data_bytes(kMaxEventDataBytes);  // copies share the payload
  std::vector<NewEvent> heavy(kMaxAppendBytes / kMaxEventDataBytes + 1, big);
  ASSERT_TRUE(check_append_limits(heavy).has_value());
  EXPECT_EQ(check_append_limits(heavy)->limit, kMaxAppendBytes);
  EXPECT_FALSE(check_append_limits({}).has_value());
}

TEST(Limits, CommandBody) {
  EXPECT_FALSE(check_command_body_limit(kMaxCommandBodyBytes).has_value());
  EXPECT_TRUE(check_command_body_limit(kMaxCommandBodyBytes + 1).has_value());
}

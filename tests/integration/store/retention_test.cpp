// Retention against a real PostgreSQL: a policy event on the stream hides
// what it no longer keeps, and the scavenger deletes only hidden rows that
// were already published.
#include <gtest/gtest.h>

#include <future>

#include "switchboard/events/platform_types.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/pg.hpp"
#include "switchboard/store/retention.hpp"
#include "switchboard/store/schema.hpp"
#include "switchboard/store/writer.hpp"
#include "switchboard/testing/servers.hpp"

using namespace sb;
using namespace std::chrono_literals;
namespace tst = sb::testing;

namespace {

pg::ConnectOptions connect(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

events::NewEvent event(std::string_view type, std::string data = "{}") {
  return events::NewEvent{.id = events::new_event_id(),
                          .type = events::EventType(type),
                          .schema_version = 1,
                          .data = events::Payload::parse(data),
                          .meta = events::Payload(),
                          .occurred_at = events::now_ms(),
                          .correlation_id = std::nullopt,
                          .causation_id = std::nullopt,
                          .actor = std::nullopt};
}

class RetentionTest : public ::testing::Test {
 protected:
  std::string url = tst::fresh_database("retention");
  std::unique_ptr<store::Writer> writer;

  void SetUp() override {
    pg::migrate(connect(url), pg::store_migrations());
    store::WriterOptions wo;
    wo.connection = connect(url);
    writer = std::make_unique<store::Writer>(wo, store::CommitListener{});
    writer->start();
    ASSERT_TRUE(tst::wait_until([&] { return writer->active(); }, 10s));
  }

  void append(const std::string& stream, std::vector<events::NewEvent> evs) {
    std::promise<store::AppendResult> p;
    auto f = p.get_future();
    writer->append({events::StreamId(stream), events::ExpectedVersion::any(),
                    events::TenantId("acme"), std::move(evs)},
                   [&p](store::AppendResult r) { p.set_value(std::move(r)); });
    ASSERT_EQ(f.get().kind, store::AppendResult::Kind::appended);
  }

  std::int64_t scalar(const pg::Sql& sql) {
    pg::Connection c(connect(url));
    return c.exec(sql).one()[0].get<std::int64_t>();
  }
};

}  // namespace

TEST_F(RetentionTest, MaxCountHidesThenScavengesOnlyPublishedRows) {
  std::vector<events::NewEvent> ten;
  for (int i = 0; i < 10; ++i) ten.push_back(event("test.thing.happened"));
  append("keep-3", std::move(ten));
  append("other", {event("test.thing.happened")});
  // The policy is an event on the stream (version 10); keep the last 3.
  append("keep-3", {event(events::kStreamRetentionSet, R"({"max_count":3})")});
  EXPECT_EQ(scalar("SELECT max_count FROM streams WHERE stream = 'keep-3'"), 3);

  store::RetentionOptions ro;
  ro.database = connect(url);
  store::Retention retention(ro, [] { return true; });
  auto first = retention.run_once();
  EXPECT_EQ(first.streams_truncated, 1);
  EXPECT_EQ(scalar("SELECT truncate_before FROM streams WHERE stream = 'keep-3'"), 8);
  // Nothing published yet: nothing may be deleted.
  EXPECT_EQ(first.events_scavenged, 0);
  EXPECT_EQ(scalar("SELECT count(*) FROM events"), 12);

  {
    pg::Connection c(connect(url));
    c.exec("UPDATE store_positions SET position = 5 WHERE name = 'published'");
  }
  EXPECT_EQ(retention.run_once().events_scavenged, 5);  // positions 1..5 only
  {
    pg::Connection c(connect(url));
    c.exec("UPDATE store_positions SET position = 12 WHERE name = 'published'");
  }
  EXPECT_EQ(retention.run_once().events_scavenged, 3);  // versions 5..7
  EXPECT_EQ(scalar("SELECT min(version) FROM events WHERE stream = 'keep-3'"), 8);
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE stream = 'other'"), 1);
  EXPECT_EQ(retention.run_once().streams_truncated, 0) << "a second pass changes nothing";
}

TEST_F(RetentionTest, MaxAgeHidesEverythingOlderAndNullClearsThePolicy) {
  append("aged", {event("test.thing.happened"), event("test.thing.happened")});
  append("aged", {event(events::kStreamRetentionSet, R"({"max_age_seconds":3600})")});
  {
    pg::Connection c(connect(url));
    c.exec(
        "UPDATE events SET recorded_at = now() - interval '2 hours' WHERE stream = 'aged' AND "
        "version < 2");
  }
  store::RetentionOptions ro;
  ro.database = connect(url);
  store::Retention retention(ro, [] { return true; });
  EXPECT_EQ(retention.run_once().streams_truncated, 1);
  EXPECT_EQ(scalar("SELECT truncate_before FROM streams WHERE stream = 'aged'"), 2);
  append("aged", {event(events::kStreamRetentionSet, R"({"max_age_seconds":null})")});
  EXPECT_EQ(
      scalar("SELECT count(*) FROM streams WHERE stream = 'aged' AND max_age_seconds IS NULL"), 1);
}

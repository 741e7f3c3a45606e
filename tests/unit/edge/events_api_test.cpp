// Query parsing of /api/v1/events (scope, filters, cursor, limits) and CSV.
#include <gtest/gtest.h>

#include "switchboard/edge/events_api.hpp"

using namespace sb::edge;

namespace {
int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e.status();
  }
  return 0;
}
}  // namespace

TEST(EventQuery, ScopedCallersSeeOnlyTheirTenant) {
  EventsApiOptions o;
  Scope acme{std::string("acme")};
  auto q = parse_event_query(
      "type=orders.*,billing.invoice.paid&stream=order-1&after=10&limit=5000", acme, o);
  ASSERT_TRUE(q.filter.tenant);
  EXPECT_EQ(q.filter.tenant->value(), "acme");
  EXPECT_EQ(q.filter.types, (std::vector<std::string>{"orders.*", "billing.invoice.paid"}));
  EXPECT_EQ(q.filter.stream->value(), "order-1");
  EXPECT_EQ(q.after, 10);
  EXPECT_EQ(q.limit, o.max_page);
  EXPECT_EQ(status_of([&] { parse_event_query("tenant=globex", acme, o); }), 403);
  EXPECT_EQ(parse_event_query("tenant=acme", acme, o).filter.tenant->value(), "acme");
  // A super admin not acting for a tenant reads across tenants, or names one.
  EXPECT_FALSE(parse_event_query("", Scope{}, o).filter.tenant);
  EXPECT_EQ(parse_event_query("tenant=globex", Scope{}, o).filter.tenant->value(), "globex");
}

TEST(EventQuery, BadParametersAre400NamingThem) {
  EventsApiOptions o;
  Scope s{std::string("acme")};
  for (const char* bad : {"type=Bad..Type", "after=-1", "after=x", "limit=0", "from=yesterday",
                          "to_position=abc", "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"}) {
    EXPECT_EQ(status_of([&] { parse_event_query(bad, s, o); }), 400) << bad;
  }
  auto q = parse_event_query("from_position=5&to_position=9&actor=user%3Aalice", s, o);
  EXPECT_EQ(q.after, 4);
  EXPECT_EQ(q.to_position, 9);
  EXPECT_EQ(*q.filter.actor, "user:alice");
}

TEST(Csv, FieldsAreQuotedWhenNeeded) {
  EXPECT_EQ(csv_header().substr(0, 12), "position,id,");
  EXPECT_EQ(csv_header().substr(csv_header().size() - 2), "\r\n");
}

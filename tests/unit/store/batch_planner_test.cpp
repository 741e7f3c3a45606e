#include <gtest/gtest.h>

#include <random>

#include "switchboard/store/batch_planner.hpp"

using namespace sb::store;
using sb::events::ExpectedVersion;
using sb::events::StreamVersion;

namespace {
ExpectedVersion exact(std::int64_t v) {
  return v < 0 ? ExpectedVersion::no_stream() : ExpectedVersion::exact(StreamVersion(v));
}
}  // namespace

namespace {
template <class T>
const T& as(const Outcome& o) {
  EXPECT_TRUE(std::holds_alternative<T>(o)) << "outcome index " << o.index();
  return std::get<T>(o);
}
PlanRequest req(std::string stream, ExpectedVersion e, std::vector<std::string> ids) {
  return {std::move(stream), e, std::move(ids)};
}
}  // namespace

TEST(BatchPlanner, AssignsGapFreePositionsAndVersionsInOrder) {
  auto plan = plan_batch({req("a", ExpectedVersion::no_stream(), {"1", "2"}),
                          req("b", ExpectedVersion::any(), {"3"}), req("a", exact(1), {"4"})},
                         {}, {}, 100);
  auto a1 = as<outcome::Accepted>(plan.outcomes[0]);
  EXPECT_EQ(a1.first_position, 101);
  EXPECT_EQ(a1.first_version, 0);
  EXPECT_EQ(as<outcome::Accepted>(plan.outcomes[1]).first_position, 103);
  auto a3 = as<outcome::Accepted>(plan.outcomes[2]);
  EXPECT_EQ(a3.first_position, 104);
  EXPECT_EQ(a3.first_version, 2);
  EXPECT_EQ(plan.new_head, 104);
  EXPECT_EQ(plan.stream_versions.at("a"), 2);
  EXPECT_EQ(plan.accepted_events, 4u);
}

TEST(BatchPlanner, OneConflictFailsOnlyItsOwnRequest) {
  auto plan =
      plan_batch({req("s", exact(4), {"x"}), req("s", exact(4), {"y"}),  // stale: s is now at 5
                  req("s", exact(5), {"z"})},
                 {}, {{"s", 4}}, 10);
  EXPECT_EQ(as<outcome::Accepted>(plan.outcomes[0]).first_version, 5);
  EXPECT_EQ(as<outcome::Conflict>(plan.outcomes[1]).current_version, 5);
  EXPECT_EQ(as<outcome::Accepted>(plan.outcomes[2]).first_position, 12);
  EXPECT_EQ(plan.new_head, 12);
}

TEST(BatchPlanner, ExpectedStateKinds) {
  auto plan = plan_batch(
      {req("new", ExpectedVersion::stream_exists(), {"1"}),
       req("old", ExpectedVersion::no_stream(), {"2"}),
       req("old", ExpectedVersion::stream_exists(), {"3"}), req("new", exact(-1), {"4"})},
      {}, {{"old", 0}}, 0);
  EXPECT_EQ(as<outcome::Conflict>(plan.outcomes[0]).current_version, -1);
  EXPECT_EQ(as<outcome::Conflict>(plan.outcomes[1]).current_version, 0);
  EXPECT_EQ(as<outcome::Accepted>(plan.outcomes[2]).first_position, 1);
  EXPECT_EQ(as<outcome::Accepted>(plan.outcomes[3]).first_version, 0);
}

TEST(BatchPlanner, StoredIdsReturnOriginalPositionsWhateverTheExpectedVersion) {
  std::unordered_map<std::string, StoredEvent> stored{{"e1", {7, "s", 0}}, {"e2", {8, "s", 1}}};
  auto plan =
      plan_batch({req("s", ExpectedVersion::no_stream(), {"e1", "e2"})}, stored, {{"s", 1}}, 8);
  auto d = as<outcome::Duplicate>(plan.outcomes[0]);
  EXPECT_EQ(d.positions, (std::vector<std::int64_t>{7, 8}));
  EXPECT_EQ(d.last_version, 1);
  EXPECT_EQ(plan.new_head, 8);
  EXPECT_EQ(plan.accepted_events, 0u);
}

TEST(BatchPlanner, RetryInsideTheSameBatchIsADuplicateOfItsOriginal) {
  auto plan = plan_batch({req("s", ExpectedVersion::no_stream(), {"a", "b"}),
                          req("s", ExpectedVersion::no_stream(), {"a", "b"})},
                         {}, {}, 0);
  as<outcome::Accepted>(plan.outcomes[0]);
  EXPECT_EQ(as<outcome::Duplicate>(plan.outcomes[1]).positions, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(plan.new_head, 2);
}

TEST(BatchPlanner, PartialDuplicatesReusedIdsAndEmptyAppendsAreRejected) {
  std::unordered_map<std::string, StoredEvent> stored{{"e1", {1, "s", 0}}};
  auto plan = plan_batch(
      {req("s", ExpectedVersion::any(), {"e1", "e9"}), req("other", ExpectedVersion::any(), {"e1"}),
       req("s", ExpectedVersion::any(), {}), req("s", ExpectedVersion::any(), {"q", "q"})},
      stored, {{"s", 0}}, 1);
  EXPECT_EQ(as<outcome::Rejected>(plan.outcomes[0]).code, "partial_duplicate");
  EXPECT_EQ(as<outcome::Rejected>(plan.outcomes[1]).code, "event_id_reused");
  EXPECT_EQ(as<outcome::Rejected>(plan.outcomes[2]).code, "empty_append");
  EXPECT_EQ(as<outcome::Rejected>(plan.outcomes[3]).code, "duplicate_event_id");
  EXPECT_EQ(plan.new_head, 1);
}

// Property: over random batches, accepted positions are exactly head+1..N in
// request order and each stream's versions are contiguous from 0.
TEST(BatchPlanner, RandomBatchesStayGapFreeAndContiguous) {
  std::mt19937 rng(42);
  std::unordered_map<std::string, std::int64_t> versions;
  std::int64_t head = 0;
  int next_id = 0;
  for (int batch = 0; batch < 200; ++batch) {
    std::vector<PlanRequest> reqs;
    int n = 1 + static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      // Built char by char: "s" + std::to_string(...) trips a g++ 12
      // -Wrestrict false positive at -O3.
      std::string stream{'s', static_cast<char>('0' + rng() % 5)};
      auto it = versions.find(stream);
      std::int64_t v = it == versions.end() ? -1 : it->second;
      ExpectedVersion e = (rng() % 3 == 0) ? exact(v - static_cast<std::int64_t>(rng() % 2))
                                           : ExpectedVersion::any();
      std::vector<std::string> ids;
      for (unsigned k = 0; k < 1 + rng() % 3; ++k) ids.push_back(std::to_string(next_id++));
      reqs.push_back(req(stream, e, ids));
    }
    auto plan = plan_batch(reqs, {}, versions, head);
    std::int64_t expect_pos = head + 1;
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      if (auto* a = std::get_if<outcome::Accepted>(&plan.outcomes[i])) {
        EXPECT_EQ(a->first_position, expect_pos);
        auto it = versions.find(reqs[i].stream);
        EXPECT_EQ(a->first_version, (it == versions.end() ? -1 : it->second) + 1);
        expect_pos += static_cast<std::int64_t>(reqs[i].event_ids.size());
        versions[reqs[i].stream] =
            a->first_version + static_cast<std::int64_t>(reqs[i].event_ids.size()) - 1;
      } else {
        ASSERT_TRUE(std::holds_alternative<outcome::Conflict>(plan.outcomes[i]));
      }
    }
    EXPECT_EQ(plan.new_head, expect_pos - 1);
    head = plan.new_head;
  }
}

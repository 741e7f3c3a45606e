// execute() (load, decide, append with the expected version, retry on
// conflict, answer a repeat from the stream) and ReactionContext, on an
// in-memory store: no servers.
#include <gtest/gtest.h>

#include <map>

#include "switchboard/events/uuid.hpp"
#include "switchboard/sdk/aggregate.hpp"
#include "switchboard/sdk/sdk.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb;
using namespace sb::sdk;
using namespace std::chrono_literals;

namespace {

// A store.append and a stream reader over maps, with the store's rules for
// expected versions and duplicate ids (docs/protocol.md 7.1).
class MemoryStore : public StoreClient, public StreamLoader {
 public:
  std::map<std::string, std::vector<events::Event>> streams;
  std::int64_t position = 0;
  std::vector<Call> calls;
  /// Runs before each append (simulates a concurrent writer) while > 0.
  int interfere = 0;
  std::string interfere_stream;

  void put(const std::string& stream, const std::string& type, const std::string& data,
           const std::string& id = events::uuid_v4().to_string()) {
    auto& s = streams[stream];
    const auto version = static_cast<std::int64_t>(s.size());
    ++position;
    const std::string text =
        "{\"id\":" + json::quoted(id) + ",\"type\":" + json::quoted(type) +
        ",\"schema\":1,\"stream\":" + json::quoted(stream) +
        ",\"version\":" + std::to_string(version) + ",\"position\":" + std::to_string(position) +
        ",\"tenant\":\"acme\",\"occurred_at\":\"2026-01-01T00:00:00.000Z\","
        "\"recorded_at\":\"2026-01-01T00:00:00.000Z\",\"correlation_id\":\"c-1\",\"data\":" +
        data + ",\"meta\":{}}";
    s.push_back(events::event_from_json(text));
  }

  Reply append(const Call& call) override {
    calls.push_back(call);
    if (interfere > 0) {
      --interfere;
      put(interfere_stream, "shop.thing.touched", "{}");
    }
    auto b = json::parse(call.body);
    const std::string stream = b["stream"].GetString();
    auto& s = streams[stream];
    std::vector<std::int64_t> dup_positions;
    for (const auto& e : b["events"].GetArray()) {
      for (const auto& have : s) {
        if (have.id.value() == e["id"].GetString()) dup_positions.push_back(have.position.value());
      }
    }
    if (!dup_positions.empty() && dup_positions.size() == b["events"].Size()) {
      std::string p = "[";
      for (std::size_t i = 0; i < dup_positions.size(); ++i)
        p += (i ? "," : "") + std::to_string(dup_positions[i]);
      return {Reply::Kind::reply,
              "{\"result\":\"duplicate\",\"positions\":" + p + "],\"last_version\":" +
                  std::to_string(static_cast<std::int64_t>(s.size()) - 1) + "}",
              ""};
    }
    const auto current = static_cast<std::int64_t>(s.size()) - 1;
    const auto& ev = b["expected_version"];
    bool match = true;
    if (ev.IsInt64()) match = ev.GetInt64() == current;
    if (ev.IsString() && std::string(ev.GetString()) == "no_stream") match = current == -1;
    if (!match) {
      return {
          Reply::Kind::reply,
          R"({"error":{"code":"wrong_expected_version","message":"conflict","details":{"current_version":)" +
              std::to_string(current) + "}}}",
          ""};
    }
    std::string p = "[";
    bool first = true;
    for (const auto& e : b["events"].GetArray()) {
      put(stream, e["type"].GetString(), json::to_string(e["data"]), e["id"].GetString());
      p += (first ? "" : ",") + std::to_string(position);
      first = false;
    }
    return {Reply::Kind::reply,
            "{\"result\":\"appended\",\"positions\":" + p +
                "],\"last_version\":" + std::to_string(s.size() - 1) + "}",
            ""};
  }

  std::int64_t load(std::string_view stream,
                    const std::function<void(const events::Event&)>& each) const override {
    auto it = streams.find(std::string(stream));
    if (it == streams.end() || it->second.empty()) return -1;
    for (const auto& e : it->second) each(e);
    return static_cast<std::int64_t>(it->second.size()) - 1;
  }
};

Request command(const std::string& id = "cmd-1") {
  Request r;
  r.kind = Request::Kind::command;
  r.command = "shop.bump";
  r.command_id = id;
  r.tenant = "acme";
  r.actor = "user:u1";
  r.correlation_id = "corr-1";
  r.deadline = std::chrono::system_clock::now() + 5s;
  return r;
}

struct Counter {
  int events = 0;
  int bumps = 0;
};

void fold(Counter& c, const events::Event& e) {
  ++c.events;
  if (e.type.value() == "shop.counter.bumped") ++c.bumps;
}

Executed bump(CommandContext& ctx, MemoryStore& store, int* decisions = nullptr,
              int max_bumps = 100) {
  return execute<Counter>(
      ctx, store, "counter-1", fold,
      [&](const Counter& c) {
        if (decisions) ++*decisions;
        if (c.bumps >= max_bumps) return Decision::refuse(422, "too_many", "enough bumps");
        return Decision::emit(
            {{"shop.counter.bumped", "{\"seen\":" + std::to_string(c.events) + "}"}});
      },
      ExecuteOptions{3});
}

std::string expected_of(const StoreClient::Call& call) {
  auto b = json::parse(call.body);
  return b["expected_version"].IsString() ? b["expected_version"].GetString()
                                          : std::to_string(b["expected_version"].GetInt64());
}

}  // namespace

TEST(Execute, AppendsWithTheLoadedVersionExpected) {
  MemoryStore store;
  auto r1 = command("c1");
  CommandContext ctx1(r1, store);
  auto a = bump(ctx1, store);
  ASSERT_EQ(a.kind, Executed::Kind::appended) << a.outcome.message;
  EXPECT_TRUE(a.outcome.created);
  EXPECT_EQ(a.response().status, 201);
  EXPECT_EQ(expected_of(store.calls.back()), "no_stream");

  auto r2 = command("c2");
  CommandContext ctx2(r2, store);
  auto b = bump(ctx2, store);
  ASSERT_EQ(b.kind, Executed::Kind::appended);
  EXPECT_EQ(expected_of(store.calls.back()), "0");
  EXPECT_EQ(b.version, 1);
  EXPECT_EQ(b.response().status, 200);
  EXPECT_EQ(
      b.outcome.event_ids,
      std::vector<std::string>{
          events::derive_event_id(events::TenantId("acme"), events::CommandId("c2"), 0).value()});
}

TEST(Execute, ReloadsAndDecidesAgainOnConflictWithTheSameIds) {
  MemoryStore store;
  store.put("counter-1", "shop.counter.bumped", "{}");
  store.interfere = 1;
  store.interfere_stream = "counter-1";
  auto r = command();
  CommandContext ctx(r, store);
  int decisions = 0;
  auto out = bump(ctx, store, &decisions);
  ASSERT_EQ(out.kind, Executed::Kind::appended) << out.outcome.code;
  EXPECT_EQ(out.attempts, 2);
  EXPECT_EQ(decisions, 2);
  ASSERT_EQ(store.calls.size(), 2u);
  EXPECT_EQ(expected_of(store.calls[0]), "0");
  EXPECT_EQ(expected_of(store.calls[1]), "1");
  // The retry decided on the new state and used the first id again.
  EXPECT_EQ(json::to_string(store.streams["counter-1"].back().data.value()), R"({"seen":2})");
  EXPECT_EQ(store.streams["counter-1"].back().id,
            events::derive_event_id(events::TenantId("acme"), events::CommandId("cmd-1"), 0));
  EXPECT_EQ(ctx.next_event_index(), 1u);
}

TEST(Execute, GivesUpAfterMaxAttemptsWith409) {
  MemoryStore store;
  store.put("counter-1", "shop.counter.bumped", "{}");
  store.interfere = 10;
  store.interfere_stream = "counter-1";
  auto r = command();
  CommandContext ctx(r, store);
  auto out = bump(ctx, store);
  EXPECT_EQ(out.kind, Executed::Kind::failed);
  EXPECT_EQ(out.attempts, 3);
  EXPECT_EQ(out.response().status, 409);
  EXPECT_THROW(out.throw_if_failed(), std::runtime_error);
}

TEST(Execute, ARepeatedCommandIsAnsweredFromTheStreamWithoutDecidingAgain) {
  MemoryStore store;
  auto r = command("same");
  CommandContext first(r, store);
  auto a = bump(first, store);
  ASSERT_EQ(a.kind, Executed::Kind::appended);
  store.put("counter-1", "shop.counter.bumped", "{}");  // someone else, later
  CommandContext again(r, store);
  int decisions = 0;
  auto b = bump(again, store, &decisions);
  EXPECT_EQ(decisions, 0);
  ASSERT_EQ(b.kind, Executed::Kind::appended);
  EXPECT_TRUE(b.outcome.duplicate);
  EXPECT_EQ(b.outcome.positions, a.outcome.positions);
  EXPECT_EQ(b.outcome.event_ids, a.outcome.event_ids);
  EXPECT_EQ(b.response().status, 201);  // as the first time
  EXPECT_EQ(store.calls.size(), 1u);
  EXPECT_EQ(store.streams["counter-1"].size(), 2u);
}

TEST(Execute, RefusalAndNothingToDoAppendNothing) {
  MemoryStore store;
  store.put("counter-1", "shop.counter.bumped", "{}");
  auto r = command();
  CommandContext ctx(r, store);
  auto refused = bump(ctx, store, nullptr, 1);
  EXPECT_EQ(refused.kind, Executed::Kind::refused);
  EXPECT_EQ(refused.response().status, 422);
  EXPECT_NO_THROW(refused.throw_if_failed());
  auto nothing = execute<Counter>(ctx, store, "counter-1", fold,
                                  [](const Counter&) { return Decision::none(); });
  EXPECT_EQ(nothing.kind, Executed::Kind::nothing);
  EXPECT_EQ(nothing.version, 0);
  EXPECT_EQ(nothing.response().status, 200);
  EXPECT_TRUE(store.calls.empty());
}

TEST(ReactionContext, DerivesIdsFromTheEventAndCarriesItsTenantAndCorrelation) {
  MemoryStore store;
  store.put("order-1", "shop.order.placed", R"({"order_id":"1"})");
  const auto cause = store.streams["order-1"].front();
  ReactionContext rc(cause, "inventory", "reserve", store, nullptr,
                     std::chrono::system_clock::now() + 5s);
  EXPECT_EQ(rc.transaction(), nullptr);
  auto out = execute<Counter>(rc.commands(), store, "stock-x", fold, [](const Counter&) {
    return Decision::emit({{"shop.stock.reserved", "{}"}});
  });
  ASSERT_EQ(out.kind, Executed::Kind::appended);
  const auto expected_id = events::derive_event_id(
      events::TenantId("acme"), events::CommandId("react:reserve:" + cause.id.value()), 0);
  EXPECT_EQ(store.streams["stock-x"].front().id, expected_id);
  const auto& call = store.calls.front();
  EXPECT_EQ(call.causation_id, cause.id.value());
  EXPECT_EQ(call.correlation_id, "c-1");
  EXPECT_EQ(call.actor, "service:inventory");
  auto body = json::parse(call.body);
  EXPECT_EQ(std::string(body["tenant"].GetString()), "acme");
  EXPECT_EQ(std::string(body["events"][0]["causation_id"].GetString()), cause.id.value());

  // Handling the same event again appends nothing twice.
  ReactionContext again(cause, "inventory", "reserve", store, nullptr,
                        std::chrono::system_clock::now() + 5s);
  auto repeat = execute<Counter>(again.commands(), store, "stock-x", fold, [](const Counter&) {
    return Decision::emit({{"shop.stock.reserved", "{}"}});
  });
  EXPECT_TRUE(repeat.outcome.duplicate);
  EXPECT_EQ(store.streams["stock-x"].size(), 1u);
}

TEST(PluginReactions, DeclarationsAreValidated) {
  Options o;
  o.store_client = std::make_shared<MemoryStore>();
  auto base = [] {
    Plugin p;
    p.name = "shop";
    p.version = "1.0.0";
    return p;
  };
  {
    auto p = base();
    Reaction r;
    r.name = "reserve";
    r.event_types = {"shop.order.placed"};
    r.handler = [](ReactionContext&) {};
    p.reactions.push_back(r);  // checkpointed without the store's database
    EXPECT_THROW(PluginHost(p, o), std::invalid_argument);
  }
  {
    auto p = base();
    Reaction r;
    r.name = "Bad Name";
    r.kind = ReactionKind::push;
    r.event_types = {"shop.order.placed"};
    r.handler = [](ReactionContext&) {};
    p.reactions.push_back(r);
    EXPECT_THROW(PluginHost(p, o), std::invalid_argument);
  }
  {
    auto p = base();
    Reaction r;
    r.name = "notify";
    r.kind = ReactionKind::push;
    r.event_types = {"shop.order.*"};
    r.handler = [](ReactionContext&) {};
    p.reactions.push_back(r);
    EXPECT_NO_THROW(PluginHost(p, o));
  }
}

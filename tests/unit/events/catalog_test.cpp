#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "switchboard/events/catalog.hpp"
#include "switchboard/events/limits.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb::events;

namespace {

constexpr const char* kUserV1 = R"({
  "type": "object", "additionalProperties": false, "required": ["email", "name"],
  "properties": {
    "email": {"type": "string", "minLength": 3},
    "name": {"type": "string"},
    "address": {"type": "object", "required": ["city"],
                "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
    "roles": {"type": "array", "items": {"enum": ["admin", "user"]}}
  }
})";
// v2 split the name; v3 nested the names under "person".
constexpr const char* kUserV2 = R"({
  "type": "object", "required": ["email", "first_name", "last_name"],
  "properties": {"email": {"type": "string"}, "first_name": {"type": "string"},
                 "last_name": {"type": "string"}}
})";
constexpr const char* kUserV3 = R"({
  "type": "object", "required": ["email", "person"],
  "properties": {"email": {"type": "string"},
                 "person": {"type": "object", "required": ["first", "last"]}}
})";

const EventType kUserRegistered("identity.user.registered");

EventTypeSpec user_spec(std::string owner = "identity") {
  return EventTypeSpec{kUserRegistered,
                       std::move(owner),
                       Persistence::stored,
                       {{1, kUserV1, {}}},
                       "A user signed up."};
}

void upcast_v1_to_v2(rapidjson::Document& d) {
  std::string name = d["name"].GetString();
  const auto space = name.find(' ');
  auto& a = d.GetAllocator();
  d.AddMember("first_name", sb::json::string_value(name.substr(0, space), a), a);
  d.AddMember("last_name",
              sb::json::string_value(space == std::string::npos ? "" : name.substr(space + 1), a),
              a);
  d.RemoveMember("name");
}

void upcast_v2_to_v3(rapidjson::Document& d) {
  auto& a = d.GetAllocator();
  rapidjson::Value person(rapidjson::kObjectType);
  person.AddMember("first", d["first_name"], a);
  person.AddMember("last", d["last_name"], a);
  d.RemoveMember("first_name");
  d.RemoveMember("last_name");
  d.AddMember("person", person, a);
}

EventTypeSpec user_spec_v3(Upcaster to2 = upcast_v1_to_v2, Upcaster to3 = upcast_v2_to_v3) {
  auto spec = user_spec();
  spec.versions.push_back({2, kUserV2, std::move(to2)});
  spec.versions.push_back({3, kUserV3, std::move(to3)});
  return spec;
}

Event user_event(int schema_version, const char* data) {
  return Event{.id = new_event_id(),
               .type = kUserRegistered,
               .schema_version = schema_version,
               .stream = StreamId("user-1"),
               .version = StreamVersion(0),
               .position = Position(1),
               .tenant = TenantId("acme"),
               .occurred_at = now_ms(),
               .recorded_at = now_ms(),
               .correlation_id = CorrelationId("c"),
               .causation_id = std::nullopt,
               .actor = std::nullopt,
               .data = Payload::parse(data),
               .meta = Payload()};
}

ValidationResult validate(const Catalog& c, const char* data, int version = 1) {
  return c.validate_event(kUserRegistered, version, sb::json::parse(data));
}

CatalogError::Kind error_kind(const std::function<void()>& f) {
  try {
    f();
  } catch (const CatalogError& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no CatalogError";
  return CatalogError::Kind::invalid_spec;
}

}  // namespace

TEST(Catalog, ValidatesAgainstTheSchema) {
  Catalog c;
  c.register_event_type(user_spec());
  EXPECT_TRUE(validate(c, R"({"email":"a@b.c","name":"Ann"})").ok());

  auto r = validate(c, R"({"email":"a@b.c"})");
  EXPECT_EQ(r.kind, ValidationResult::Kind::schema_violation);
  EXPECT_EQ(r.keyword, "required");
  EXPECT_EQ(r.instance_path, "/name");
  EXPECT_NE(r.message.find("missing required property 'name'"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("identity.user.registered v1"), std::string::npos) << r.message;

  r = validate(c, R"({"email":"a@b.c","name":"Ann","address":{"zip":"1"}})");
  EXPECT_EQ(r.keyword, "required");
  EXPECT_EQ(r.instance_path, "/address/city");
  EXPECT_EQ(r.schema_path, "#/properties/address");

  r = validate(c, R"({"email":"a@b.c","name":7})");
  EXPECT_EQ(r.keyword, "type");
  EXPECT_EQ(r.instance_path, "/name");
  EXPECT_NE(r.message.find("got integer"), std::string::npos) << r.message;

  r = validate(c, R"({"email":"a@b.c","name":"Ann","nickname":"A"})");
  EXPECT_EQ(r.keyword, "additionalProperties");
  EXPECT_EQ(r.instance_path, "/nickname");

  r = validate(c, R"({"email":"a@b.c","name":"Ann","roles":["user","root"]})");
  EXPECT_EQ(r.keyword, "enum");
  EXPECT_EQ(r.instance_path, "/roles/1");
  EXPECT_NE(r.message.find(R"(["admin","user"])"), std::string::npos) << r.message;

  r = validate(c, R"({"email":"a","name":"Ann"})");
  EXPECT_EQ(r.keyword, "minLength");
  EXPECT_NE(r.message.find("minLength: 3"), std::string::npos) << r.message;

  r = validate(c, "[]");
  EXPECT_EQ(r.keyword, "type");
  EXPECT_EQ(r.instance_path, "");
  EXPECT_NE(r.message.find("the root"), std::string::npos) << r.message;
}

TEST(Catalog, UnknownTypeAndVersionAreDistinct) {
  Catalog c;
  c.register_event_type(user_spec());
  auto r = c.validate_event(EventType("billing.invoice.paid"), 1, sb::json::parse("{}"));
  EXPECT_EQ(r.kind, ValidationResult::Kind::unknown_type);
  EXPECT_FALSE(r.ok());
  r = validate(c, R"({"email":"a@b.c","name":"Ann"})", 2);
  EXPECT_EQ(r.kind, ValidationResult::Kind::unknown_version);
  EXPECT_NE(r.message.find("1..1"), std::string::npos) << r.message;
  EXPECT_FALSE(c.contains(EventType("billing.invoice.paid")));
  EXPECT_FALSE(c.current_version(EventType("billing.invoice.paid")).has_value());
  EXPECT_FALSE(c.is_transient(EventType("billing.invoice.paid")));
}

TEST(Catalog, PayloadValidationEnforcesTheSizeLimit) {
  Catalog c;
  c.register_event_type(EventTypeSpec{EventType("test.blob.stored"),
                                      "test",
                                      Persistence::stored,
                                      {{1, R"({"type":"object"})", {}}},
                                      ""});
  const auto big = Payload::parse(R"({"s":")" + std::string(kMaxEventDataBytes, 'x') + R"("})");
  EXPECT_EQ(c.validate_event(EventType("test.blob.stored"), 1, big).kind,
            ValidationResult::Kind::too_large);
  EXPECT_TRUE(c.validate_event(EventType("test.blob.stored"), 1, Payload()).ok());
  NewEvent e{.id = new_event_id(),
             .type = EventType("test.blob.stored"),
             .data = big,
             .meta = Payload(),
             .occurred_at = now_ms()};
  EXPECT_EQ(c.validate_new_event(e).kind, ValidationResult::Kind::too_large);
  e.data = Payload();
  EXPECT_TRUE(c.validate_new_event(e).ok());
  e.meta = Payload::parse("[1]");
  EXPECT_EQ(c.validate_new_event(e).instance_path, "/meta");
}

TEST(Catalog, ReRegistrationRules) {
  Catalog c;
  c.register_event_type(user_spec());
  const auto v = c.version();
  EXPECT_EQ(v, 1u);
  // Identical: no-op, also with differently formatted but equal schema text.
  c.register_event_type(user_spec());
  auto reformatted = user_spec();
  reformatted.versions[0].json_schema = sb::json::to_string(sb::json::parse(kUserV1));
  c.register_event_type(reformatted);
  // Another owner bringing the very same type is harmless.
  c.register_event_type(user_spec("someone-else"));
  EXPECT_EQ(c.version(), v);
  EXPECT_EQ(c.find(kUserRegistered)->owner, "identity");

  // Another owner changing it is not.
  auto theirs = user_spec("someone-else");
  theirs.versions.push_back({2, kUserV2, {}});
  EXPECT_EQ(error_kind([&] { c.register_event_type(theirs); }), CatalogError::Kind::conflict);
  // Nor is changing a published version, or stored <-> transient.
  auto changed = user_spec();
  changed.versions[0].json_schema = R"({"type":"object"})";
  EXPECT_EQ(error_kind([&] { c.register_event_type(changed); }), CatalogError::Kind::conflict);
  auto transient = user_spec();
  transient.persistence = Persistence::transient;
  EXPECT_EQ(error_kind([&] { c.register_event_type(transient); }), CatalogError::Kind::conflict);

  // The owner adds versions, which must follow the current one.
  auto skipping = user_spec();
  skipping.versions = {{3, kUserV3, {}}};
  EXPECT_EQ(error_kind([&] { c.register_event_type(skipping); }), CatalogError::Kind::invalid_spec);
  c.register_event_type(user_spec_v3());
  EXPECT_EQ(c.current_version(kUserRegistered), 3);
  EXPECT_EQ(c.version(), v + 2);
  // An older instance during a rolling deploy still registers v1 only: fine.
  c.register_event_type(user_spec());
  EXPECT_EQ(c.current_version(kUserRegistered), 3);
  EXPECT_EQ(c.version(), v + 2);
}

TEST(Catalog, RejectsBadSpecs) {
  Catalog c;
  auto spec = [](std::vector<EventSchemaVersion> versions) {
    return EventTypeSpec{EventType("test.thing.happened"), "test", Persistence::stored,
                         std::move(versions), ""};
  };
  auto kind = [&](EventTypeSpec s) { return error_kind([&] { c.register_event_type(s); }); };
  EXPECT_EQ(kind(spec({})), CatalogError::Kind::invalid_spec);
  EXPECT_EQ(kind(spec({{1, "{", {}}})), CatalogError::Kind::invalid_spec);
  EXPECT_EQ(kind(spec({{1, "[]", {}}})), CatalogError::Kind::invalid_spec);
  EXPECT_EQ(kind(spec({{0, "{}", {}}})), CatalogError::Kind::invalid_spec);
  EXPECT_EQ(kind(spec({{1, "{}", {}}, {3, "{}", {}}})), CatalogError::Kind::invalid_spec);
  EXPECT_EQ(kind(spec({{1, "{}", {}}, {1, "{}", {}}})), CatalogError::Kind::invalid_spec);
  // A pattern the validator cannot compile would silently accept anything.
  EXPECT_EQ(kind(spec({{1, R"({"properties":{"n":{"type":"string","pattern":"^\\d+$"}}})", {}}})),
            CatalogError::Kind::invalid_spec);
  EXPECT_EQ(kind(spec({{1, R"j({"patternProperties":{"(?=x)":{}}})j", {}}})),
            CatalogError::Kind::invalid_spec);
  auto no_owner = spec({{1, "{}", {}}});
  no_owner.owner.clear();
  EXPECT_EQ(kind(no_owner), CatalogError::Kind::invalid_spec);
  // Stored types need <context>.<entity>.<verb>; transient signals may be shorter.
  EXPECT_EQ(kind(EventTypeSpec{
                EventType("test.happened"), "test", Persistence::stored, {{1, "{}", {}}}, ""}),
            CatalogError::Kind::invalid_spec);
  c.register_event_type(
      EventTypeSpec{EventType("test.ping"), "test", Persistence::transient, {{1, "{}", {}}}, ""});
  EXPECT_TRUE(c.is_transient(EventType("test.ping")));
  // Versions may come unordered, and a supported pattern is fine.
  c.register_event_type(spec({{2, R"({"properties":{"n":{"pattern":"^[0-9]+$"}}})", {}},
                              {1, R"({"enum":[{"pattern":"\\d"}]})", {}}}));
  EXPECT_EQ(c.current_version(EventType("test.thing.happened")), 2);
  EXPECT_FALSE(
      c.validate_event(EventType("test.thing.happened"), 2, sb::json::parse(R"({"n":"1a"})")).ok());
}

TEST(Catalog, UpcastsThroughTheChain) {
  Catalog c;
  c.register_event_type(user_spec_v3());
  auto v1 = user_event(1, R"({"email":"a@b.c","name":"Ann Lee"})");
  const auto id = v1.id;
  EXPECT_EQ(c.upcast(v1), 2);
  EXPECT_EQ(v1.schema_version, 3);
  EXPECT_EQ(v1.id, id);
  EXPECT_EQ(v1.data, Payload::parse(R"({"email":"a@b.c","person":{"first":"Ann","last":"Lee"}})"));
  EXPECT_TRUE(c.validate_event(kUserRegistered, 3, v1.data).ok());

  auto v2 = user_event(2, R"({"email":"x@y.z","first_name":"Bo","last_name":"Ek"})");
  EXPECT_EQ(c.upcast(v2), 1);
  EXPECT_EQ(v2.data.value()["person"]["first"].GetString(), std::string("Bo"));

  auto current = user_event(3, R"({"email":"x@y.z","person":{"first":"B","last":"E"}})");
  const auto before = current.data;
  EXPECT_EQ(c.upcast(current), 0);
  EXPECT_EQ(current.data, before);

  // Types this catalog does not know are left alone.
  auto other = user_event(1, "{}");
  other.type = EventType("billing.invoice.paid");
  EXPECT_EQ(c.upcast(other), 0);

  auto future = user_event(4, "{}");
  EXPECT_EQ(error_kind([&] { c.upcast(future); }), CatalogError::Kind::unknown_version);
  EXPECT_EQ(future.schema_version, 4);
}

TEST(Catalog, UpcastFailuresLeaveTheEventAlone) {
  Catalog c;
  c.register_event_type(user_spec_v3({}, upcast_v2_to_v3));
  auto v1 = user_event(1, R"({"email":"a@b.c","name":"Ann"})");
  const auto original = v1;
  EXPECT_EQ(error_kind([&] { c.upcast(v1); }), CatalogError::Kind::missing_upcaster);
  EXPECT_EQ(v1, original);

  // The owner's process attaches its upcaster to the version it already knew.
  c.register_event_type(user_spec_v3());
  EXPECT_TRUE(c.find(kUserRegistered)->versions[1].has_upcaster);
  EXPECT_EQ(c.upcast(v1), 2);

  Catalog failing;
  failing.register_event_type(user_spec_v3(
      [](rapidjson::Document&) { throw std::runtime_error("boom"); }, upcast_v2_to_v3));
  auto e = original;
  try {
    failing.upcast(e);
    FAIL();
  } catch (const CatalogError& err) {
    EXPECT_EQ(err.kind(), CatalogError::Kind::upcast_failed);
    EXPECT_NE(std::string(err.what()).find("from v1 to v2 failed: boom"), std::string::npos);
  }
  EXPECT_EQ(e, original);
}

TEST(Catalog, Commands) {
  Catalog c;
  CommandSpec spec{
      CommandName("identity.register_user"),
      "identity",
      R"({"type":"object","required":["email"],"properties":{"email":{"type":"string"}}})",
      {"tenant_admin", "super_admin", "tenant_admin"},
      {kUserRegistered},
      "Register a user."};
  c.register_command_type(spec);
  EXPECT_TRUE(c.contains(CommandName("identity.register_user")));
  const auto info = c.find(CommandName("identity.register_user"));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->roles, (std::vector<std::string>{"super_admin", "tenant_admin"}));
  EXPECT_EQ(info->emits, std::vector<EventType>{kUserRegistered});

  EXPECT_TRUE(c.validate_command(CommandName("identity.register_user"),
                                 sb::json::parse(R"({"email":"a@b.c"})"))
                  .ok());
  const auto r = c.validate_command(CommandName("identity.register_user"), sb::json::parse("{}"));
  EXPECT_EQ(r.keyword, "required");
  EXPECT_EQ(r.instance_path, "/email");
  EXPECT_EQ(c.validate_command(CommandName("identity.nope"), sb::json::parse("{}")).kind,
            ValidationResult::Kind::unknown_type);

  const auto v = c.version();
  c.register_command_type(spec);
  EXPECT_EQ(c.version(), v);
  auto other_owner = spec;
  other_owner.owner = "plugin";
  c.register_command_type(other_owner);  // identical content: harmless
  other_owner.roles = {"user"};
  EXPECT_EQ(error_kind([&] { c.register_command_type(other_owner); }),
            CatalogError::Kind::conflict);
  auto updated = spec;
  updated.roles = {"user"};
  c.register_command_type(updated);  // the owner may change its command
  EXPECT_EQ(c.find(CommandName("identity.register_user"))->roles, std::vector<std::string>{"user"});
  EXPECT_EQ(c.version(), v + 1);
}

TEST(Catalog, ListenersSeeEveryChangeInOrder) {
  Catalog c;
  std::vector<CatalogChange> seen;
  const auto id = c.on_change([&](const CatalogChange& change) {
    // Listeners may read the catalog.
    EXPECT_GE(c.version(), change.catalog_version);
    seen.push_back(change);
  });
  c.on_change([](const CatalogChange&) { throw std::runtime_error("listener bug"); });
  c.register_event_type(user_spec());
  c.register_event_type(user_spec_v3());
  c.register_command_type(CommandSpec{
      CommandName("identity.register_user"), "identity", R"({"type":"object"})", {}, {}, ""});
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].kind, CatalogChange::Kind::event_type_added);
  EXPECT_EQ(seen[1].kind, CatalogChange::Kind::event_version_added);
  EXPECT_EQ(seen[1].schema_version, 2);
  EXPECT_EQ(seen[2].schema_version, 3);
  EXPECT_EQ(seen[3].kind, CatalogChange::Kind::command_type_added);
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].catalog_version, i + 1);
  EXPECT_EQ(seen[0].json_schema, sb::json::to_string(sb::json::parse(kUserV1)));

  // Registering from a listener would deadlock; it is refused instead.
  Catalog other;
  bool refused = false;
  other.on_change([&](const CatalogChange&) {
    try {
      other.register_event_type(user_spec_v3());
    } catch (const CatalogError&) {
      refused = true;
    }
  });
  other.register_event_type(user_spec());
  EXPECT_TRUE(refused);

  c.remove_listener(id);
  c.register_command_type(CommandSpec{
      CommandName("identity.remove_user"), "identity", R"({"type":"object"})", {}, {}, ""});
  EXPECT_EQ(seen.size(), 4u);
}

TEST(Catalog, DescribesEverything) {
  Catalog c;
  c.register_event_type(user_spec_v3());
  c.register_command_type(CommandSpec{CommandName("identity.register_user"),
                                      "identity",
                                      R"({"type":"object"})",
                                      {"user"},
                                      {kUserRegistered},
                                      ""});
  const auto doc = sb::json::parse(c.to_json());
  EXPECT_EQ(doc["version"].GetInt64(), 4);
  ASSERT_EQ(doc["event_types"].Size(), 1u);
  const auto& t = doc["event_types"][0];
  EXPECT_STREQ(t["type"].GetString(), "identity.user.registered");
  EXPECT_EQ(t["current_version"].GetInt(), 3);
  EXPECT_FALSE(t["transient"].GetBool());
  EXPECT_EQ(t["versions"].Size(), 3u);
  EXPECT_TRUE(t["versions"][0]["schema"].IsObject());
  EXPECT_FALSE(t["versions"][0]["upcaster"].GetBool());
  EXPECT_TRUE(t["versions"][2]["upcaster"].GetBool());
  EXPECT_STREQ(doc["command_types"][0]["roles"][0].GetString(), "user");

  // The description reads back as specs (what a plugin's registration carries).
  const auto spec = event_type_spec_from_json(t, "identity");
  EXPECT_EQ(spec.type, kUserRegistered);
  ASSERT_EQ(spec.versions.size(), 3u);
  Catalog copy;
  copy.register_event_type(spec);
  const auto cmd = command_spec_from_json(doc["command_types"][0], "identity");
  copy.register_command_type(cmd);
  EXPECT_EQ(sb::json::parse(copy.to_json())["command_types"], doc["command_types"]);
  EXPECT_EQ(c.event_types().size(), 1u);
  EXPECT_EQ(c.command_types().size(), 1u);
}

TEST(Catalog, SpecsFromJsonNameTheField) {
  auto error_path = [](const char* text, bool command) {
    try {
      const auto doc = sb::json::parse(text);
      if (command) {
        command_spec_from_json(doc, "x");
      } else {
        event_type_spec_from_json(doc, "x");
      }
    } catch (const sb::json::Error& e) {
      return e.path();
    }
    return std::string("accepted");
  };
  EXPECT_EQ(error_path(R"({"versions":[]})", false), "/type");
  EXPECT_EQ(error_path(R"({"type":"a.b.c","versions":[]})", false), "/versions");
  EXPECT_EQ(
      error_path(R"({"type":"a.b.c","versions":[{"version":1,"schema":{}},{"version":2}]})", false),
      "/versions/1/schema");
  EXPECT_EQ(
      error_path(
          R"({"type":"a.b.c","versions":[{"version":1,"schema":{}},{"version":0,"schema":{}}]})",
          false),
      "/versions/1/version");
  EXPECT_EQ(error_path(R"({"type":"a.b.c","versions":[{"version":1,"schema":[]}]})", false),
            "/versions/0/schema");
  EXPECT_EQ(error_path(R"({"name":"a.b","schema":{},"emits":["ok.ok.ok","Bad"]})", true),
            "/emits/1");
  EXPECT_EQ(error_path(R"({"name":"a.b","schema":{},"roles":"admin"})", true), "/roles");
  EXPECT_EQ(error_path(R"({"name":"a.b","schema":{},"transient":true})", true), "accepted");
}

TEST(Catalog, ConcurrentReadersAndWriter) {
  Catalog c;
  c.register_event_type(user_spec_v3());
  std::atomic<bool> stop{false};
  std::atomic<int> validations{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      const auto good = sb::json::parse(R"({"email":"a@b.c","name":"Ann"})");
      const auto bad = sb::json::parse(R"({"email":"a@b.c"})");
      while (!stop) {
        EXPECT_TRUE(c.validate_event(kUserRegistered, 1, good).ok());
        EXPECT_FALSE(c.validate_event(kUserRegistered, 1, bad).ok());
        auto e = user_event(1, R"({"email":"a@b.c","name":"Ann Lee"})");
        EXPECT_EQ(c.upcast(e), 2);
        EXPECT_FALSE(c.to_json().empty());
        c.contains(EventType("test.type0.happened"));
        ++validations;
      }
    });
  }
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      const std::string type = "test.type" + std::to_string(i) + ".happened";
      c.register_event_type(EventTypeSpec{
          EventType(type), "test", Persistence::stored, {{1, R"({"type":"object"})", {}}}, ""});
      c.register_event_type(EventTypeSpec{
          EventType(type),
          "test",
          Persistence::stored,
          {{1, R"({"type":"object"})", {}}, {2, R"({"type":"object","required":["x"]})", {}}},
          ""});
    }
  });
  writer.join();
  while (validations < 30) std::this_thread::yield();
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(c.version(), 3u + 400u);
  EXPECT_EQ(c.event_types().size(), 201u);
}

// RapidJSON 1.1's regex keeps match state in the compiled schema: concurrent
// validation against a `pattern` schema used to crash the store (an
// assertion in rapidjson/internal/regex.h under Debug builds).
TEST(Catalog, ConcurrentValidationOfPatternSchemasIsSafe) {
  Catalog c;
  c.register_event_type({EventType("test.code.checked"),
                         "tests",
                         Persistence::stored,
                         {{1,
                           R"({"type":"object","properties":{"code":{"type":"string",)"
                           R"("pattern":"^[a-z]{2}-[0-9]{1,6}$"}},"required":["code"]})",
                           {}}},
                         ""});
  auto good = sb::json::parse(R"({"code":"ab-123456"})");
  auto bad = sb::json::parse(R"({"code":"AB-x"})");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) {
        if (!c.validate_event(EventType("test.code.checked"), 1, good).ok()) ++wrong;
        if (c.validate_event(EventType("test.code.checked"), 1, bad).ok()) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// A process that did not see a registration learns the types from the
// catalog.type.registered events: replaying the changes rebuilds the catalog.
TEST(Catalog, ReplayingChangesTeachesAnotherCatalog) {
  Catalog source;
  std::vector<std::string> changes;
  source.on_change([&](const CatalogChange& c) { changes.push_back(to_json(c)); });
  source.register_event_type({EventType("shop.order.placed"),
                              "orders",
                              Persistence::stored,
                              {{1, R"({"type":"object","required":["sku"]})", {}},
                               {2, R"({"type":"object","required":["sku","qty"]})", {}}},
                              ""});
  source.register_command_type({CommandName("orders.place_order"),
                                "orders",
                                R"({"type":"object"})",
                                {"user"},
                                {EventType("shop.order.placed")},
                                ""});
  ASSERT_EQ(changes.size(), 3u);
  Catalog learner;
  for (const auto& c : changes) apply_catalog_change(learner, sb::json::parse(c));
  EXPECT_EQ(learner.current_version(EventType("shop.order.placed")), 2);
  EXPECT_FALSE(
      learner.validate_event(EventType("shop.order.placed"), 2, sb::json::parse(R"({"sku":"a"})"))
          .ok());
  ASSERT_TRUE(learner.find(CommandName("orders.place_order")).has_value());
  EXPECT_EQ(learner.find(CommandName("orders.place_order"))->roles,
            std::vector<std::string>{"user"});
  // Applying the same changes again is a no-op; a malformed one is an error.
  for (const auto& c : changes) apply_catalog_change(learner, sb::json::parse(c));
  EXPECT_THROW(apply_catalog_change(learner, sb::json::parse(R"({"kind":"nonsense"})")),
               sb::json::Error);
}

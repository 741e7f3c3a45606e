#include "test_plugin.hpp"

#include <rapidjson/document.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "switchboard/events/envelope.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/projections/projection.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::testplugin {

using namespace std::chrono_literals;

struct State {
  std::string name;
  std::string version;
  std::string instance_id;
  std::string projection;  // "<name>_items" with '-' as '_'
  std::shared_ptr<pg::Pool> db;
  std::atomic<std::uint64_t> commands_executed{0};
  std::atomic<std::uint64_t> requests{0};

  // The gate inside the projection's apply: closed while paused.
  std::mutex mu;
  std::condition_variable cv;
  bool paused = false;
  bool stopping = false;

  void pass_gate() {
    std::unique_lock lk(mu);
    // Woken by resume or stop; the slice only guards against a lost wake-up.
    while (paused && !stopping) cv.wait_for(lk, 100ms);
  }
  void set_paused(bool p) {
    {
      std::lock_guard lk(mu);
      paused = p;
    }
    cv.notify_all();
  }
  void stop() {
    {
      std::lock_guard lk(mu);
      stopping = true;
    }
    cv.notify_all();
  }
};

namespace {

constexpr const char* kCreateSchema =
    R"({"type":"object","required":["id","title"],"properties":{"id":{"type":"string","pattern":"^[a-z0-9-]{1,40}$"},"title":{"type":"string","maxLength":200}},"additionalProperties":false})";
constexpr const char* kSlowCreateSchema =
    R"({"type":"object","required":["id","title","ms"],"properties":{"id":{"type":"string","pattern":"^[a-z0-9-]{1,40}$"},"title":{"type":"string","maxLength":200},"ms":{"type":"integer","minimum":0,"maximum":600000}},"additionalProperties":false})";
constexpr const char* kItemCreatedSchema =
    R"({"type":"object","required":["id","title"],"properties":{"id":{"type":"string"},"title":{"type":"string"}}})";

std::string roles_json(const std::vector<std::string>& roles) {
  std::string out = "[";
  for (std::size_t i = 0; i < roles.size(); ++i) {
    if (i > 0) out += ',';
    json::append_quoted(out, roles[i]);
  }
  return out + "]";
}

sdk::Response echo(const State& s, const sdk::Request& r) {
  std::string b =
      "{\"service\":" + json::quoted(s.name) + ",\"version\":" + json::quoted(s.version);
  auto id = r.params.find("id");
  b += ",\"id\":" + json::quoted(id == r.params.end() ? std::string() : id->second);
  b += ",\"method\":" + json::quoted(r.method) + ",\"path\":" + json::quoted(r.path);
  b += ",\"route\":" + json::quoted(r.route) + ",\"query\":" + json::quoted(r.query);
  b += ",\"tenant\":" + json::quoted(r.tenant) + ",\"actor\":" + json::quoted(r.actor);
  b += ",\"roles\":" + roles_json(r.roles) + ",\"body\":" + json::quoted(r.body);
  b += ",\"x_test\":" + json::quoted(r.header("x-test")) + "}";
  auto out = sdk::Response::json(std::move(b));
  out.headers["X-Instance"] = s.instance_id;
  return out;
}

sdk::Response get_item(const State& s, const sdk::Request& r) {
  const auto& id = r.params.at("id");
  auto row = pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    return tx
        .exec(pg::Sql::trusted("SELECT id, title, position FROM " + s.projection +
                               "_items WHERE tenant = $1 AND id = $2"),
              {r.tenant, id})
        .optional_one();
  });
  if (!row) return sdk::Response::error(404, "not_found", "no item " + id);
  return sdk::Response::json(
      "{\"id\":" + json::quoted((*row)["id"].get<std::string>()) +
      ",\"title\":" + json::quoted((*row)["title"].get<std::string>()) +
      ",\"position\":" + std::to_string((*row)["position"].get<std::int64_t>()) + "}");
}

// Appends <name>.item.created to item-<id>, expecting no stream.
sdk::Response create_item(State& s, sdk::CommandContext& ctx, const rapidjson::Value& body) {
  const auto id = json::require_string(body, "id");
  const auto title = json::require_string(body, "title");
  sdk::NewEvent e;
  e.type = s.name + ".item.created";
  e.data = "{\"id\":" + json::quoted(id) + ",\"title\":" + json::quoted(title) + "}";
  auto outcome = ctx.append("item-" + id, events::ExpectedVersion::no_stream(), {e});
  if (outcome.ok && !outcome.duplicate) s.commands_executed.fetch_add(1);
  return outcome.response();
}

std::shared_ptr<projections::Projection> items_projection(const std::shared_ptr<State>& s) {
  projections::ProjectionBuilder b(s->projection);
  b.table("items").schema(
      "CREATE TABLE {items} (tenant text NOT NULL, id text NOT NULL, title text NOT NULL, "
      "position bigint NOT NULL, PRIMARY KEY (tenant, id))");
  b.on(s->name + ".item.created",
       [s](pg::Transaction& tx, const projections::Tables& t, const events::Event& e) {
         s->pass_gate();
         const auto& d = e.data.value();
         tx.exec(t.sql("INSERT INTO {items} (tenant, id, title, position) VALUES ($1, $2, $3, $4) "
                       "ON CONFLICT (tenant, id) DO NOTHING"),
                 {e.tenant.value(), json::require_string(d, "id"), json::require_string(d, "title"),
                  e.position.value()});
         return events::HandleResult::handled;
       });
  return b.build();
}

}  // namespace

config::Schema extra_keys() {
  config::Schema s;
  s.optional("plugin.name", config::Type::string, "testsvc", "service name")
      .optional("plugin.version", config::Type::string, "1.0.0", "service version");
  return s;
}

sdk::Plugin make_plugin(const config::Config& cfg) {
  auto s = std::make_shared<State>();
  s->name = cfg.get_string("plugin.name");
  s->version = cfg.get_string("plugin.version");
  s->instance_id = cfg.has("plugin.instance_id") && !cfg.get_string("plugin.instance_id").empty()
                       ? cfg.get_string("plugin.instance_id")
                       : events::uuid_v4().to_string();
  s->projection = s->name + "_items";
  for (auto& c : s->projection) {
    if (c == '-') c = '_';
  }
  s->db = sdk::database(cfg, 8);

  sdk::Plugin p;
  p.name = s->name;
  p.version = s->version;
  p.instance_id = s->instance_id;
  p.transport.kind = sdk::TransportKind::amqp;

  auto counted = [s](sdk::RequestHandler h) {
    return [s, h = std::move(h)](const sdk::Request& r) {
      s->requests.fetch_add(1);
      return h(r);
    };
  };
  auto echo_handler = counted([s](const sdk::Request& r) { return echo(*s, r); });
  p.get("/echo/{id}", echo_handler).post("/echo/{id}", echo_handler);
  sdk::Endpoint ping;
  ping.method = "GET";
  ping.path = "/public/ping";
  ping.is_public = true;
  ping.handler = counted([s](const sdk::Request&) {
    return sdk::Response::json("{\"pong\":true,\"version\":" + json::quoted(s->version) + "}");
  });
  p.endpoint(std::move(ping));
  p.get("/admin/only",
        counted([](const sdk::Request&) { return sdk::Response::json("{\"ok\":true}"); }),
        {"admin"});
  // Tight on purpose (edge rate limit tests): 1 per second, burst 2.
  sdk::Endpoint limited;
  limited.method = "GET";
  limited.path = "/limited";
  limited.rate_limit = sdk::RateLimit{1.0, 2};
  limited.handler =
      counted([](const sdk::Request&) { return sdk::Response::json("{\"ok\":true}"); });
  p.endpoint(std::move(limited));
  sdk::Endpoint items;
  items.method = "GET";
  items.path = "/items/{id}";
  items.projection = s->projection;
  items.handler = counted([s](const sdk::Request& r) { return get_item(*s, r); });
  p.endpoint(std::move(items));
  p.get("/slow", counted([](const sdk::Request& r) {
          std::int64_t ms = 0;
          try {
            ms = std::stoll(r.query_param("ms").value_or("0"));
          } catch (const std::exception&) {
            return sdk::Response::error(400, "invalid_request", "ms must be an integer");
          }
          // Deliberately ignores the deadline: tests use it to outlast one.
          std::this_thread::sleep_for(std::chrono::milliseconds(std::max<std::int64_t>(ms, 0)));
          return sdk::Response::json("{\"slept\":" + std::to_string(ms) + "}");
        }));

  p.event_type(s->name + ".item.created", kItemCreatedSchema);
  p.command(s->name + ".create_item", kCreateSchema, [s](sdk::CommandContext& ctx) {
    auto body = json::parse(ctx.body());
    return create_item(*s, ctx, body);
  });
  p.command(s->name + ".slow_create", kSlowCreateSchema, [s](sdk::CommandContext& ctx) {
    auto body = json::parse(ctx.body());
    std::this_thread::sleep_for(std::chrono::milliseconds(json::require_int64(body, "ms")));
    return create_item(*s, ctx, body);
  });
  p.command(s->name + ".reject", R"({"type":"object"})", [](sdk::CommandContext&) {
    return sdk::Response::error(422, "rule_violated", "this command always breaks a rule",
                                "{\"rule\":\"always\"}");
  });
  p.commands[0].emits = {s->name + ".item.created"};
  p.commands[1].emits = {s->name + ".item.created"};

  p.projections.push_back({items_projection(s), s->db, s->db, 1});

  p.admin_routes.push_back({"POST", "/control/pause", [s](const sdk::Request&) {
                              s->set_paused(true);
                              return sdk::Response::json("{\"paused\":true}");
                            }});
  p.admin_routes.push_back({"POST", "/control/resume", [s](const sdk::Request&) {
                              s->set_paused(false);
                              return sdk::Response::json("{\"paused\":false}");
                            }});
  p.admin_routes.push_back(
      {"GET", "/control/stats", [s](const sdk::Request&) {
         return sdk::Response::json(
             "{\"commands_executed\":" + std::to_string(s->commands_executed.load()) +
             ",\"requests\":" + std::to_string(s->requests.load()) + "}");
       }});
  // A paused projection must not hold up SIGTERM.
  p.on_stop.push_back([s] { s->stop(); });
  return p;
}

int main(int argc, const char* const* argv) {
  return sdk::run("test-plugin", extra_keys(), make_plugin, argc, argv);
}

}  // namespace sb::testplugin

// The orders plugin (include/switchboard/shop/orders.hpp).
#include "switchboard/shop/orders.hpp"

#include <rapidjson/document.h>

#include <algorithm>

#include "switchboard/events/time.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/projections/projection.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::shop::orders {
namespace {

constexpr const char* kPlaceSchema =
    R"({"type":"object","required":["order_id","sku","qty"],"properties":{"order_id":{"type":"string","pattern":"^[a-z0-9-]{1,40}$"},"sku":{"type":"string","pattern":"^[A-Za-z0-9_-]{1,40}$"},"qty":{"type":"integer","minimum":1,"maximum":1000000},"fail_payment":{"type":"boolean"}},"additionalProperties":false})";
constexpr const char* kPlacedSchema =
    R"({"type":"object","required":["order_id","sku","qty","fail_payment"],"properties":{"order_id":{"type":"string"},"sku":{"type":"string"},"qty":{"type":"integer","minimum":1},"fail_payment":{"type":"boolean"}}})";
constexpr const char* kConfirmedSchema =
    R"({"type":"object","required":["order_id"],"properties":{"order_id":{"type":"string"},"cause":{"type":"string"}}})";
constexpr const char* kCancelledSchema =
    R"({"type":"object","required":["order_id","reason","sku","qty"],"properties":{"order_id":{"type":"string"},"reason":{"type":"string"},"sku":{"type":"string"},"qty":{"type":"integer"},"cause":{"type":"string"}}})";

constexpr std::string_view kProjection = "orders";

bool flag(const rapidjson::Value& v, const char* key) {
  const auto* f = json::find(v, key);
  return f != nullptr && f->IsBool() && f->GetBool();
}

struct State {
  std::shared_ptr<pg::Pool> db;
  std::unique_ptr<sdk::StoreLoader> loader;
};

std::string status_of(std::string_view type) {
  if (type == kPlaced) return "placed";
  if (type == kConfirmed) return "confirmed";
  return "cancelled";
}

std::shared_ptr<projections::Projection> read_model() {
  projections::ProjectionBuilder b{std::string(kProjection)};
  b.table("orders").table("history");
  b.schema(
      "CREATE TABLE {orders} (tenant text NOT NULL, order_id text NOT NULL, sku text NOT NULL, "
      "qty bigint NOT NULL, fail_payment boolean NOT NULL, status text NOT NULL, reason text, "
      "placed_position bigint NOT NULL, position bigint NOT NULL, placed_at text NOT NULL, "
      "updated_at text NOT NULL, PRIMARY KEY (tenant, order_id))");
  b.schema("CREATE INDEX ON {orders} (tenant, placed_position DESC)");
  b.schema(
      "CREATE TABLE {history} (tenant text NOT NULL, order_id text NOT NULL, "
      "position bigint NOT NULL, status text NOT NULL, type text NOT NULL, reason text, "
      "at text NOT NULL, PRIMARY KEY (tenant, order_id, position))");
  auto history = [](pg::Transaction& tx, const projections::Tables& t, const events::Event& e) {
    const auto& d = e.data.value();
    tx.exec(t.sql("INSERT INTO {history} (tenant, order_id, position, status, type, reason, at) "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"),
            {e.tenant.value(), json::require_string(d, "order_id"), e.position.value(),
             status_of(e.type.value()), e.type.value(), json::optional_string(d, "reason"),
             events::format_rfc3339_ms(e.recorded_at)});
  };
  b.on(std::string(kPlaced), [history](pg::Transaction& tx, const projections::Tables& t,
                                       const events::Event& e) {
    const auto& d = e.data.value();
    const auto at = events::format_rfc3339_ms(e.recorded_at);
    tx.exec(t.sql("INSERT INTO {orders} (tenant, order_id, sku, qty, fail_payment, status, "
                  "placed_position, position, placed_at, updated_at) VALUES ($1, $2, $3, $4, $5, "
                  "'placed', $6, $6, $7, $7) ON CONFLICT (tenant, order_id) DO NOTHING"),
            {e.tenant.value(), json::require_string(d, "order_id"), json::require_string(d, "sku"),
             json::require_int64(d, "qty"), flag(d, "fail_payment"), e.position.value(), at});
    history(tx, t, e);
    return events::HandleResult::handled;
  });
  auto moved = [history](pg::Transaction& tx, const projections::Tables& t,
                         const events::Event& e) {
    const auto& d = e.data.value();
    tx.exec(t.sql("UPDATE {orders} SET status = $3, reason = $4, position = $5, updated_at = $6 "
                  "WHERE tenant = $1 AND order_id = $2 AND position < $5"),
            {e.tenant.value(), json::require_string(d, "order_id"), status_of(e.type.value()),
             json::optional_string(d, "reason"), e.position.value(),
             events::format_rfc3339_ms(e.recorded_at)});
    history(tx, t, e);
    return events::HandleResult::handled;
  };
  b.on(std::string(kConfirmed), moved);
  b.on(std::string(kCancelled), moved);
  return b.build();
}

std::string order_json(const pg::Row& row) {
  std::string out = "{\"order_id\":" + json::quoted(row["order_id"].get<std::string>()) +
                    ",\"sku\":" + json::quoted(row["sku"].get<std::string>()) +
                    ",\"qty\":" + std::to_string(row["qty"].get<std::int64_t>()) +
                    ",\"fail_payment\":" + (row["fail_payment"].get<bool>() ? "true" : "false") +
                    ",\"status\":" + json::quoted(row["status"].get<std::string>()) +
                    ",\"reason\":";
  out += row["reason"].is_null() ? "null" : json::quoted(row["reason"].get<std::string>());
  out += ",\"position\":" + std::to_string(row["position"].get<std::int64_t>()) +
         ",\"placed_at\":" + json::quoted(row["placed_at"].get<std::string>()) +
         ",\"updated_at\":" + json::quoted(row["updated_at"].get<std::string>());
  return out;
}

// The columns order_json reads, in its order.
#define SB_ORDER_COLUMNS \
  "order_id, sku, qty, fail_payment, status, reason, position, placed_at, updated_at"

sdk::Response get_order(const State& s, const sdk::Request& r) {
  const auto& id = r.params.at("id");
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto row = tx.exec(("SELECT " SB_ORDER_COLUMNS
                        " FROM orders_orders WHERE tenant = $1 AND order_id = $2"),
                       {r.tenant, id})
                   .optional_one();
    if (!row) return sdk::Response::error(404, "not_found", "no order " + id);
    std::string out = order_json(*row) + ",\"history\":[";
    auto h = tx.exec(
        "SELECT status, type, reason, position, at FROM orders_history "
        "WHERE tenant = $1 AND order_id = $2 ORDER BY position",
        {r.tenant, id});
    bool first = true;
    for (const auto& e : h) {
      if (!first) out += ',';
      first = false;
      out += "{\"status\":" + json::quoted(e["status"].get<std::string>()) +
             ",\"type\":" + json::quoted(e["type"].get<std::string>()) + ",\"reason\":" +
             (e["reason"].is_null() ? std::string("null")
                                    : json::quoted(e["reason"].get<std::string>())) +
             ",\"position\":" + std::to_string(e["position"].get<std::int64_t>()) +
             ",\"at\":" + json::quoted(e["at"].get<std::string>()) + "}";
    }
    return sdk::Response::json(out + "]}");
  });
}

sdk::Response list_orders(const State& s, const sdk::Request& r) {
  std::int64_t limit = 20;
  std::int64_t offset = 0;
  try {
    if (auto l = r.query_param("limit")) limit = std::stoll(*l);
    if (auto o = r.query_param("offset")) offset = std::stoll(*o);
  } catch (const std::exception&) {
    return sdk::Response::error(400, "invalid_request", "limit and offset must be integers");
  }
  if (limit < 1 || limit > 100 || offset < 0) {
    return sdk::Response::error(400, "invalid_request", "limit 1..100, offset >= 0");
  }
  const auto status = r.query_param("status");
  const auto sku = r.query_param("sku");
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto rows = tx.exec(("SELECT " SB_ORDER_COLUMNS " FROM orders_orders WHERE tenant = $1 "
                         "AND ($2::text IS NULL OR status = $2) "
                         "AND ($3::text IS NULL OR sku = $3) "
                         "ORDER BY placed_position DESC LIMIT $4 OFFSET $5"),
                        {r.tenant, status, sku, limit + 1, offset});
    std::string out = "{\"orders\":[";
    std::int64_t n = 0;
    for (const auto& row : rows) {
      if (n == limit) break;
      if (n > 0) out += ',';
      out += order_json(row) + "}";
      ++n;
    }
    const bool more = static_cast<std::int64_t>(rows.size()) > limit;
    out += "],\"limit\":" + std::to_string(limit) + ",\"offset\":" + std::to_string(offset) +
           ",\"next_offset\":" + (more ? std::to_string(offset + limit) : std::string("null")) +
           "}";
    return sdk::Response::json(out);
  });
}

}  // namespace

std::string order_stream(std::string_view tenant, std::string_view order_id) {
  return "order-" + std::string(tenant) + "-" + std::string(order_id);
}

void fold(Order& o, const events::Event& e) {
  const auto& d = e.data.value();
  const auto type = e.type.value();
  if (type == kPlaced) {
    o.exists = true;
    o.status = "placed";
    o.order_id = json::require_string(d, "order_id");
    o.sku = json::require_string(d, "sku");
    o.qty = json::require_int64(d, "qty");
    o.fail_payment = flag(d, "fail_payment");
  } else if (type == kConfirmed) {
    o.status = "confirmed";
  } else if (type == kCancelled) {
    o.status = "cancelled";
  }
}

sdk::Decision decide_place(const Order& o, const Place& p) {
  if (o.exists) {
    return sdk::Decision::refuse(409, "order_exists", "order " + p.order_id + " exists",
                                 "{\"status\":" + json::quoted(o.status) + "}");
  }
  return sdk::Decision::emit(
      {{std::string(kPlaced),
        "{\"order_id\":" + json::quoted(p.order_id) + ",\"sku\":" + json::quoted(p.sku) +
            ",\"qty\":" + std::to_string(p.qty) +
            ",\"fail_payment\":" + (p.fail_payment ? "true" : "false") + "}"}});
}

sdk::Decision decide_outcome(const Order& o, std::string_view cause_type,
                             std::string_view cause_id) {
  if (!o.exists || o.status != "placed") return sdk::Decision::none();
  const std::string tail = ",\"cause\":" + json::quoted(cause_id) + "}";
  if (cause_type == "shop.payment.captured") {
    return sdk::Decision::emit(
        {{std::string(kConfirmed), "{\"order_id\":" + json::quoted(o.order_id) + tail}});
  }
  const std::string reason =
      cause_type == "shop.payment.failed" ? "payment_failed" : "out_of_stock";
  return sdk::Decision::emit(
      {{std::string(kCancelled),
        "{\"order_id\":" + json::quoted(o.order_id) + ",\"reason\":" + json::quoted(reason) +
            ",\"sku\":" + json::quoted(o.sku) + ",\"qty\":" + std::to_string(o.qty) + tail}});
}

config::Schema extra_keys() {
  config::Schema s;
  s.optional("shop.partitions", config::Type::integer, "1", "partitions of the saga subscription");
  return s;
}

sdk::Plugin make_plugin(const config::Config& cfg) {
  auto s = std::make_shared<State>();
  const auto partitions = cfg.get_int("shop.partitions");
  s->db = sdk::reaction_database(cfg, partitions);
  s->loader = std::make_unique<sdk::StoreLoader>(s->db);

  sdk::Plugin p;
  p.name = "orders";
  p.version = "1.0.0";
  p.instance_id = cfg.get_string("plugin.instance_id");
  if (p.instance_id.empty()) p.instance_id = events::uuid_v4().to_string();
  // Queries say which instance answered (X-Instance), to see the spread.
  auto tagged = [instance = p.instance_id](sdk::RequestHandler h) {
    return [instance, h = std::move(h)](const sdk::Request& r) {
      auto out = h(r);
      out.headers["X-Instance"] = instance;
      return out;
    };
  };
  p.event_type(std::string(kPlaced), kPlacedSchema)
      .event_type(std::string(kConfirmed), kConfirmedSchema)
      .event_type(std::string(kCancelled), kCancelledSchema);

  p.command("orders.place", kPlaceSchema, [s](sdk::CommandContext& ctx) {
    auto body = json::parse(ctx.body());
    Place place{json::require_string(body, "order_id"), json::require_string(body, "sku"),
                json::require_int64(body, "qty"), flag(body, "fail_payment")};
    return sdk::execute<Order>(ctx, *s->loader, order_stream(ctx.tenant(), place.order_id), fold,
                               [&](const Order& o) { return decide_place(o, place); })
        .response();
  });
  p.commands.back().emits = {std::string(kPlaced)};
  p.commands.back().description = "Place an order; the saga confirms or cancels it.";

  p.react(
      "saga", {"shop.payment.captured", "shop.payment.failed", "shop.stock.unavailable"}, s->db,
      [s](sdk::ReactionContext& rc) {
        const auto& e = rc.event();
        const auto order_id = json::require_string(e.data.value(), "order_id");
        sdk::execute<Order>(
            rc.commands(), *s->loader, order_stream(e.tenant.value(), order_id), fold,
            [&](const Order& o) { return decide_outcome(o, e.type.value(), e.id.value()); })
            .throw_if_failed();
      },
      static_cast<int>(partitions));

  p.projections.push_back({read_model(), s->db, s->db, 1});
  sdk::Endpoint get;
  get.method = "GET";
  get.path = "/orders/{id}";
  get.projection = std::string(kProjection);
  get.handler = tagged([s](const sdk::Request& r) { return get_order(*s, r); });
  p.endpoint(std::move(get));
  sdk::Endpoint list;
  list.method = "GET";
  list.path = "/orders";
  list.projection = std::string(kProjection);
  list.handler = tagged([s](const sdk::Request& r) { return list_orders(*s, r); });
  p.endpoint(std::move(list));
  return p;
}

}  // namespace sb::shop::orders

// The notifications plugin (include/switchboard/shop/notifications.hpp).
#include "switchboard/shop/notifications.hpp"

#include <rapidjson/document.h>

#include "switchboard/events/time.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::shop::notifications {

std::string message_for(const events::Event& e) {
  const auto& d = e.data.value();
  const auto order = json::require_string(d, "order_id");
  const auto type = e.type.value();
  if (type == "shop.order.placed") return "We received your order " + order + ".";
  if (type == "shop.order.confirmed") return "Your order " + order + " is confirmed.";
  if (type == "shop.order.cancelled") {
    return "Your order " + order + " was cancelled (" +
           json::optional_string(d, "reason").value_or("unknown") + ").";
  }
  return "";
}

sdk::Plugin make_plugin(const config::Config& cfg) {
  auto db = sdk::database(cfg, 8);
  pg::with_transaction(*db, [](pg::Transaction& tx) {
    tx.exec(
        "CREATE TABLE IF NOT EXISTS notifications_messages (tenant text NOT NULL, "
        "event_id text PRIMARY KEY, order_id text NOT NULL, type text NOT NULL, "
        "message text NOT NULL, position bigint NOT NULL, recorded_at text NOT NULL)");
    tx.exec(
        "CREATE INDEX IF NOT EXISTS notifications_messages_order ON notifications_messages "
        "(tenant, order_id, position)");
  });

  sdk::Plugin p;
  p.name = "notifications";
  p.version = "1.0.0";
  sdk::Reaction notify;
  notify.name = "notify";
  notify.kind = sdk::ReactionKind::push;
  notify.event_types = {"shop.order.*"};
  notify.store = db;  // deduplicated: the insert commits with the event id
  notify.handler = [](sdk::ReactionContext& rc) {
    const auto& e = rc.event();
    const auto text = message_for(e);
    if (text.empty() || rc.transaction() == nullptr) return;
    rc.transaction()->exec(
        "INSERT INTO notifications_messages (tenant, event_id, order_id, type, message, "
        "position, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (event_id) DO NOTHING",
        {e.tenant.value(), e.id.value(), json::require_string(e.data.value(), "order_id"),
         e.type.value(), text, e.position.value(), events::format_rfc3339_ms(e.recorded_at)});
  };
  p.reactions.push_back(std::move(notify));
  p.get("/notifications", [db](const sdk::Request& r) {
    const auto order = r.query_param("order_id");
    return pg::with_transaction(*db, [&](pg::Transaction& tx) {
      auto rows = tx.exec(
          "SELECT order_id, type, message, position, recorded_at FROM notifications_messages "
          "WHERE tenant = $1 AND ($2::text IS NULL OR order_id = $2) "
          "ORDER BY position DESC LIMIT 200",
          {r.tenant, order});
      std::string out = "{\"notifications\":[";
      bool first = true;
      for (const auto& row : rows) {
        if (!first) out += ',';
        first = false;
        out += "{\"order_id\":" + json::quoted(row["order_id"].get<std::string>()) +
               ",\"type\":" + json::quoted(row["type"].get<std::string>()) +
               ",\"message\":" + json::quoted(row["message"].get<std::string>()) +
               ",\"position\":" + std::to_string(row["position"].get<std::int64_t>()) +
               ",\"recorded_at\":" + json::quoted(row["recorded_at"].get<std::string>()) + "}";
      }
      return sdk::Response::json(out + "]}");
    });
  });
  return p;
}

}  // namespace sb::shop::notifications

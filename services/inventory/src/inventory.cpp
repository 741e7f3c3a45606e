// The inventory plugin (include/switchboard/shop/inventory.hpp).
#include "switchboard/shop/inventory.hpp"

#include <rapidjson/document.h>

#include "switchboard/shared/json.hpp"

namespace sb::shop::inventory {
namespace {

constexpr const char* kReservedSchema =
    R"({"type":"object","required":["order_id","sku","qty","fail_payment"],"properties":{"order_id":{"type":"string"},"sku":{"type":"string"},"qty":{"type":"integer","minimum":1},"fail_payment":{"type":"boolean"}}})";
constexpr const char* kUnavailableSchema =
    R"({"type":"object","required":["order_id","sku","qty","available"],"properties":{"order_id":{"type":"string"},"sku":{"type":"string"},"qty":{"type":"integer"},"available":{"type":"integer"}}})";
constexpr const char* kReleasedSchema =
    R"({"type":"object","required":["order_id","sku","qty"],"properties":{"order_id":{"type":"string"},"sku":{"type":"string"},"qty":{"type":"integer"}}})";

bool flag(const rapidjson::Value& v, const char* key) {
  const auto* f = json::find(v, key);
  return f != nullptr && f->IsBool() && f->GetBool();
}

struct State {
  std::shared_ptr<pg::Pool> db;
  std::unique_ptr<sdk::StoreLoader> loader;
  std::int64_t initial = 100;
};

std::string order_fields(std::string_view order_id, std::string_view sku, std::int64_t qty) {
  return "{\"order_id\":" + json::quoted(order_id) + ",\"sku\":" + json::quoted(sku) +
         ",\"qty\":" + std::to_string(qty);
}

sdk::Response get_stock(const State& s, const sdk::Request& r) {
  const auto& sku = r.params.at("sku");
  if (sku.empty() || sku.size() > 40) return sdk::Response::error(400, "invalid_request", "sku");
  Stock stock;
  const auto version =
      s.loader->load(stock_stream(r.tenant, sku), [&](const events::Event& e) { fold(stock, e); });
  std::int64_t reserved = 0;
  std::string list = "[";
  bool first = true;
  for (const auto& [order, res] : stock.orders) {
    if (res.status == "reserved") reserved += res.qty;
    if (!first) list += ',';
    first = false;
    list += "{\"order_id\":" + json::quoted(order) + ",\"qty\":" + std::to_string(res.qty) +
            ",\"status\":" + json::quoted(res.status) + "}";
  }
  return sdk::Response::json(
      "{\"sku\":" + json::quoted(sku) + ",\"initial\":" + std::to_string(s.initial) +
      ",\"available\":" + std::to_string(s.initial - stock.taken) +
      ",\"reserved\":" + std::to_string(reserved) + ",\"version\":" + std::to_string(version) +
      ",\"reservations\":" + list + "]}");
}

}  // namespace

std::string stock_stream(std::string_view tenant, std::string_view sku) {
  return "stock-" + std::string(tenant) + "-" + std::string(sku);
}

void fold(Stock& s, const events::Event& e) {
  const auto& d = e.data.value();
  const auto type = e.type.value();
  const auto order = json::require_string(d, "order_id");
  const auto qty = json::require_int64(d, "qty");
  if (type == kReserved) {
    s.taken += qty;
    s.orders[order] = {qty, "reserved"};
  } else if (type == kUnavailable) {
    s.orders[order] = {qty, "unavailable"};
  } else if (type == kReleased) {
    s.taken -= qty;
    s.orders[order].status = "released";
  }
}

sdk::Decision decide_reserve(const Stock& s, std::int64_t initial, std::string_view sku,
                             std::string_view order_id, std::int64_t qty, bool fail_payment) {
  if (s.orders.count(std::string(order_id)) > 0) return sdk::Decision::none();
  const auto available = initial - s.taken;
  if (available >= qty) {
    return sdk::Decision::emit(
        {{std::string(kReserved), order_fields(order_id, sku, qty) + ",\"fail_payment\":" +
                                      (fail_payment ? "true" : "false") + "}"}});
  }
  return sdk::Decision::emit(
      {{std::string(kUnavailable),
        order_fields(order_id, sku, qty) + ",\"available\":" + std::to_string(available) + "}"}});
}

sdk::Decision decide_release(const Stock& s, std::string_view sku, std::string_view order_id) {
  auto it = s.orders.find(std::string(order_id));
  if (it == s.orders.end() || it->second.status != "reserved") return sdk::Decision::none();
  return sdk::Decision::emit(
      {{std::string(kReleased), order_fields(order_id, sku, it->second.qty) + "}"}});
}

config::Schema extra_keys() {
  config::Schema s;
  s.optional("inventory.initial_stock", config::Type::integer, "100",
             "units every SKU starts with");
  s.optional("shop.partitions", config::Type::integer, "1", "partitions of the stock subscription");
  return s;
}

sdk::Plugin make_plugin(const config::Config& cfg) {
  auto s = std::make_shared<State>();
  const auto partitions = cfg.get_int("shop.partitions");
  s->db = sdk::reaction_database(cfg, partitions);
  s->loader = std::make_unique<sdk::StoreLoader>(s->db);
  s->initial = cfg.get_int("inventory.initial_stock");

  sdk::Plugin p;
  p.name = "inventory";
  p.version = "1.0.0";
  p.event_type(std::string(kReserved), kReservedSchema)
      .event_type(std::string(kUnavailable), kUnavailableSchema)
      .event_type(std::string(kReleased), kReleasedSchema);
  p.react(
      "stock", {"shop.order.placed", "shop.order.cancelled"}, s->db,
      [s](sdk::ReactionContext& rc) {
        const auto& e = rc.event();
        const auto& d = e.data.value();
        const auto order_id = json::require_string(d, "order_id");
        const auto sku = json::require_string(d, "sku");
        const auto stream = stock_stream(e.tenant.value(), sku);
        if (e.type.value() == "shop.order.placed") {
          const auto qty = json::require_int64(d, "qty");
          const bool fail = flag(d, "fail_payment");
          sdk::execute<Stock>(rc.commands(), *s->loader, stream, fold, [&](const Stock& st) {
            return decide_reserve(st, s->initial, sku, order_id, qty, fail);
          }).throw_if_failed();
        } else {
          sdk::execute<Stock>(rc.commands(), *s->loader, stream, fold, [&](const Stock& st) {
            return decide_release(st, sku, order_id);
          }).throw_if_failed();
        }
      },
      static_cast<int>(partitions));
  p.get("/stock/{sku}", [s](const sdk::Request& r) { return get_stock(*s, r); });
  return p;
}

}  // namespace sb::shop::inventory

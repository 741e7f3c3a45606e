// The payments plugin (include/switchboard/shop/payments.hpp).
#include "switchboard/shop/payments.hpp"

#include <rapidjson/document.h>

#include "switchboard/shared/json.hpp"

namespace sb::shop::payments {
namespace {

constexpr const char* kCapturedSchema =
    R"({"type":"object","required":["order_id","amount_cents"],"properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer","minimum":0}}})";
constexpr const char* kFailedSchema =
    R"({"type":"object","required":["order_id","reason"],"properties":{"order_id":{"type":"string"},"reason":{"type":"string"}}})";

struct State {
  std::shared_ptr<pg::Pool> db;
  std::unique_ptr<sdk::StoreLoader> loader;
  std::int64_t unit_price = 1000;
};

}  // namespace

std::string payment_stream(std::string_view tenant, std::string_view order_id) {
  return "payment-" + std::string(tenant) + "-" + std::string(order_id);
}

void fold(Payment& p, const events::Event& e) {
  if (e.type.value() == kCaptured) {
    p.status = "captured";
    p.amount_cents = json::require_int64(e.data.value(), "amount_cents");
  } else if (e.type.value() == kFailed) {
    p.status = "failed";
  }
}

sdk::Decision decide_capture(const Payment& p, std::string_view order_id, std::int64_t amount_cents,
                             bool fail) {
  if (!p.status.empty()) return sdk::Decision::none();
  if (fail) {
    return sdk::Decision::emit({{std::string(kFailed), "{\"order_id\":" + json::quoted(order_id) +
                                                           ",\"reason\":\"card_declined\"}"}});
  }
  return sdk::Decision::emit(
      {{std::string(kCaptured), "{\"order_id\":" + json::quoted(order_id) +
                                    ",\"amount_cents\":" + std::to_string(amount_cents) + "}"}});
}

config::Schema extra_keys() {
  config::Schema s;
  s.optional("payments.unit_price_cents", config::Type::integer, "1000", "price of one unit");
  s.optional("shop.partitions", config::Type::integer, "1",
             "partitions of the capture subscription");
  return s;
}

sdk::Plugin make_plugin(const config::Config& cfg) {
  auto s = std::make_shared<State>();
  const auto partitions = cfg.get_int("shop.partitions");
  s->db = sdk::reaction_database(cfg, partitions);
  s->loader = std::make_unique<sdk::StoreLoader>(s->db);
  s->unit_price = cfg.get_int("payments.unit_price_cents");

  sdk::Plugin p;
  p.name = "payments";
  p.version = "1.0.0";
  p.event_type(std::string(kCaptured), kCapturedSchema)
      .event_type(std::string(kFailed), kFailedSchema);
  p.react(
      "capture", {"shop.stock.reserved"}, s->db,
      [s](sdk::ReactionContext& rc) {
        const auto& e = rc.event();
        const auto& d = e.data.value();
        const auto order_id = json::require_string(d, "order_id");
        const auto amount = json::require_int64(d, "qty") * s->unit_price;
        const auto* f = json::find(d, "fail_payment");
        const bool fail = f != nullptr && f->IsBool() && f->GetBool();
        sdk::execute<Payment>(
            rc.commands(), *s->loader, payment_stream(e.tenant.value(), order_id), fold,
            [&](const Payment& pay) { return decide_capture(pay, order_id, amount, fail); })
            .throw_if_failed();
      },
      static_cast<int>(partitions));
  p.get("/payments/{order_id}", [s](const sdk::Request& r) {
    const auto& id = r.params.at("order_id");
    Payment pay;
    s->loader->load(payment_stream(r.tenant, id), [&](const events::Event& e) { fold(pay, e); });
    if (pay.status.empty()) return sdk::Response::error(404, "not_found", "no payment for " + id);
    return sdk::Response::json("{\"order_id\":" + json::quoted(id) +
                               ",\"status\":" + json::quoted(pay.status) +
                               ",\"amount_cents\":" + std::to_string(pay.amount_cents) + "}");
  });
  return p;
}

}  // namespace sb::shop::payments

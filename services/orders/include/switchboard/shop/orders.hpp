#pragma once
// The orders plugin: an Order aggregate (place, confirm, cancel), the saga
// steps it reacts to, and the `orders` read model. Pure parts are exposed
// for unit tests.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/sdk/aggregate.hpp"
#include "switchboard/sdk/sdk.hpp"

namespace sb::shop::orders {

inline constexpr std::string_view kPlaced = "shop.order.placed";
inline constexpr std::string_view kConfirmed = "shop.order.confirmed";
inline constexpr std::string_view kCancelled = "shop.order.cancelled";

struct Order {
  bool exists = false;
  std::string order_id;
  std::string status;  // placed, confirmed, cancelled
  std::string sku;
  std::int64_t qty = 0;
  bool fail_payment = false;
};

/// "order-<tenant>-<order_id>".
std::string order_stream(std::string_view tenant, std::string_view order_id);
void fold(Order& order, const events::Event& event);

struct Place {
  std::string order_id;
  std::string sku;
  std::int64_t qty = 0;
  bool fail_payment = false;
};
sdk::Decision decide_place(const Order& order, const Place& place);
/// A saga step: `cause_type` is shop.payment.captured (confirm),
/// shop.payment.failed or shop.stock.unavailable (cancel). Nothing when the
/// order is no longer `placed`.
sdk::Decision decide_outcome(const Order& order, std::string_view cause_type,
                             std::string_view cause_id);

config::Schema extra_keys();
sdk::Plugin make_plugin(const config::Config& cfg);

}  // namespace sb::shop::orders

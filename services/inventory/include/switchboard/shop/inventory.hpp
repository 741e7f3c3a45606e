#pragma once
// The inventory plugin: stock per SKU, reserved when an order is placed and
// released when it is cancelled. Pure parts exposed for unit tests.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "switchboard/sdk/aggregate.hpp"
#include "switchboard/sdk/sdk.hpp"

namespace sb::shop::inventory {

inline constexpr std::string_view kReserved = "shop.stock.reserved";
inline constexpr std::string_view kUnavailable = "shop.stock.unavailable";
inline constexpr std::string_view kReleased = "shop.stock.released";

struct Reservation {
  std::int64_t qty = 0;
  std::string status;  // reserved, unavailable, released
};

/// Of one SKU; available = initial stock - taken.
struct Stock {
  std::int64_t taken = 0;
  std::map<std::string, Reservation> orders;
};

/// "stock-<tenant>-<sku>".
std::string stock_stream(std::string_view tenant, std::string_view sku);
void fold(Stock& stock, const events::Event& event);
/// shop.stock.reserved or shop.stock.unavailable; nothing when the order was
/// seen before.
sdk::Decision decide_reserve(const Stock& stock, std::int64_t initial, std::string_view sku,
                             std::string_view order_id, std::int64_t qty, bool fail_payment);
/// shop.stock.released when the order holds a reservation; else nothing.
sdk::Decision decide_release(const Stock& stock, std::string_view sku, std::string_view order_id);

config::Schema extra_keys();
sdk::Plugin make_plugin(const config::Config& cfg);

}  // namespace sb::shop::inventory

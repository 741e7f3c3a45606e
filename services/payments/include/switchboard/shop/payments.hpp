#pragma once
// The payments plugin: a simulated capture that can be told to fail.

#include <cstdint>
#include <string>
#include <string_view>

#include "switchboard/sdk/aggregate.hpp"
#include "switchboard/sdk/sdk.hpp"

namespace sb::shop::payments {

inline constexpr std::string_view kCaptured = "shop.payment.captured";
inline constexpr std::string_view kFailed = "shop.payment.failed";

struct Payment {
  std::string status;  // "", captured, failed
  std::int64_t amount_cents = 0;
};

/// "payment-<tenant>-<order_id>".
std::string payment_stream(std::string_view tenant, std::string_view order_id);
void fold(Payment& payment, const events::Event& event);
/// Captured or failed, once per order (nothing when already decided).
sdk::Decision decide_capture(const Payment& payment, std::string_view order_id,
                             std::int64_t amount_cents, bool fail);

config::Schema extra_keys();
sdk::Plugin make_plugin(const config::Config& cfg);

}  // namespace sb::shop::payments

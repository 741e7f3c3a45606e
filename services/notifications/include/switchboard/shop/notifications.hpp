#pragma once
// The notifications plugin: a push reaction on shop.order.* that records the
// message it would send.

#include <string>

#include "switchboard/sdk/sdk.hpp"

namespace sb::shop::notifications {

/// The text for an order event ("" for types it does not announce).
std::string message_for(const events::Event& event);

sdk::Plugin make_plugin(const config::Config& cfg);

}  // namespace sb::shop::notifications

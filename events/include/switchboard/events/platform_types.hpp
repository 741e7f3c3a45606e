#pragma once
// The platform's own event types, registered in every catalog.

#include <string_view>

#include "switchboard/events/catalog.hpp"

namespace sb::events {

inline constexpr std::string_view kPlatformOwner = "platform";

inline constexpr std::string_view kServiceInstanceRegistered = "service.instance.registered";
inline constexpr std::string_view kServiceInstanceDeregistered = "service.instance.deregistered";
inline constexpr std::string_view kServiceInstanceExpired = "service.instance.expired";
inline constexpr std::string_view kServiceHeartbeat = "service.heartbeat";
inline constexpr std::string_view kServiceVersionWeightsSet = "service.version.weights_set";
inline constexpr std::string_view kStoreHeadAdvanced = "store.head.advanced";
inline constexpr std::string_view kCatalogTypeRegistered = "catalog.type.registered";
inline constexpr std::string_view kStreamRetentionSet = "store.stream.retention_set";

void register_platform_types(Catalog& catalog);
/// A new catalog holding the platform's types.
Catalog builtin_catalog();

}  // namespace sb::events

#pragma once
// The identity service's read model (read_model.cpp): views identity_tenants,
// identity_users, identity_roles, identity_api_keys, identity_config.

#include <memory>
#include <string_view>

#include "switchboard/projections/projection.hpp"

namespace sb::identity {

inline constexpr std::string_view kReadModel = "identity";

std::shared_ptr<projections::Projection> read_model();

}  // namespace sb::identity

#pragma once
// The registry's read model as a projection of the projection engine
// (projections/projection.hpp): the fold of read_model.hpp addressed through
// the engine's generation tables.

#include <memory>

#include "switchboard/projections/projection.hpp"

namespace sb::registry {

std::shared_ptr<projections::Projection> make_registry_projection();

}  // namespace sb::registry

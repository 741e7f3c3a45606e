#pragma once
// The `registry` process: migrations, then the Registry component (see
// registry.hpp), configured from `--config FILE` and SB_* variables.

#include "switchboard/shared/config.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::registry {

config::Schema config_schema();
void build(app::Lifecycle& lifecycle, const config::Config& cfg);
int main(int argc, const char* const* argv);

}  // namespace sb::registry

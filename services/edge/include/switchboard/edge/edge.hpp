#pragma once
// The edge process: the platform's only HTTP entry. Today it serves the
// endpoints every process has (/health, /ready with dependency checks,
// /metrics); commands, routing and the event APIs arrive with later issues.

#include "switchboard/shared/config.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::edge {

/// Every key the edge understands (unknown keys are errors).
config::Schema config_schema();

/// Adds the edge's components to `lifecycle`, configured from `cfg`.
void build(app::Lifecycle& lifecycle, const config::Config& cfg);

/// The whole process: config from argv/env, logging, components, run.
/// Returns the process exit code.
int main(int argc, const char* const* argv);

}  // namespace sb::edge

#pragma once
// The `store` process: migrations, the single writer, the ordered publisher
// and the broker endpoints, wired as components (see writer.hpp,
// event_publisher.hpp, endpoints.hpp).

#include "switchboard/shared/config.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::store {

config::Schema config_schema();
void build(app::Lifecycle& lifecycle, const config::Config& cfg);
int main(int argc, const char* const* argv);

}  // namespace sb::store

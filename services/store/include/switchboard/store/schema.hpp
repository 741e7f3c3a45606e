#pragma once
// The store's SQL migrations (services/store/migrations), embedded at build time.

#include "switchboard/shared/pg_migrations.hpp"

namespace sb::pg {
MigrationSet store_migrations();
}  // namespace sb::pg

#pragma once
// Versioned SQL migrations, applied at start-up.
//
// Each component owns a named set (e.g. "store", "registry"), so several sets
// live in one database. Applied migrations are recorded in
// schema_migrations(component, version, name, checksum, applied_at). A run
// holds a session advisory lock, so concurrent starters apply each migration
// once: the others wait, then find nothing left to do. Each migration runs in
// its own transaction together with the row that records it.
//
// A migration, once applied, is immutable: a changed checksum is an error, as
// is a new migration numbered below one already applied (it would run out of
// order). Applied versions unknown to this binary (a newer release ran) are
// tolerated with a warning.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/shared/pg.hpp"

namespace sb::pg {

struct Migration {
  std::int64_t version = 0;  // > 0, unique within the set
  std::string name;          // [A-Za-z0-9_-]+
  std::string sql;           // may hold several statements
};

struct MigrationSet {
  std::string component;  // [a-z0-9_]+, the namespace in schema_migrations
  std::vector<Migration> migrations;
};

/// Reads NNNN_name.sql files (any number of digits) from a directory, sorted
/// by version. Other files are ignored, but a *.sql file whose name does not
/// follow the pattern, or two files with one version, is a MigrationError.
MigrationSet load_migrations(std::string component, const std::filesystem::path& directory);

/// Sorts by version and checks names and uniqueness; throws MigrationError.
void validate(MigrationSet& set);

/// SHA-256 (hex) of the SQL with CRLF line endings normalised to LF, so a
/// checkout's line-ending conversion does not count as a change.
std::string migration_checksum(std::string_view sql);

struct MigrateOptions {
  /// How long to wait for another instance that is migrating the database.
  std::chrono::milliseconds lock_timeout{60000};
};

struct MigrateReport {
  std::vector<std::int64_t> applied;  // versions applied by this run, in order
  std::size_t already_applied = 0;
};

/// Applies the set's pending migrations on a dedicated connection opened
/// with `connection`. Throws MigrationError (invalid set, changed checksum,
/// out-of-order migration, lock not obtained in time), or the QueryError of a
/// failing migration (which is then not recorded; earlier ones stay applied).
MigrateReport migrate(const ConnectOptions& connection, MigrationSet set,
                      const MigrateOptions& options = {});

}  // namespace sb::pg

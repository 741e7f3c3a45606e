// Every SQL statement is parameterised: proved in two parts.
//
// 1. The type: pg::Connection::exec and pg::Transaction::exec take a pg::Sql,
//    which converts implicitly only from text the compiler sees (consteval),
//    so a value concatenated into a statement does not compile. The
//    static_asserts below pin that down.
// 2. The escape hatch: text assembled at run time (table names with a
//    configured prefix or generation suffix, a constant column list, "$n"
//    placeholders for a variable number of parameters) goes through
//    pg::Sql::trusted. This test reads the source tree and fails when a file
//    calls it more often than the audited list below says, or when any file
//    but the pg wrapper itself and the audited test/process helpers talks to
//    libpqxx directly (which would bypass pg::Sql altogether).
//
// Adding a Sql::trusted call means adding it here with the reason it splices
// no value — the review of that line is the point.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "switchboard/shared/pg.hpp"

namespace fs = std::filesystem;

static_assert(!std::is_convertible_v<std::string, sb::pg::Sql>);
static_assert(!std::is_convertible_v<std::string_view, sb::pg::Sql>);
static_assert(!std::is_constructible_v<sb::pg::Sql, std::string>);
static_assert(!std::is_constructible_v<sb::pg::Sql, std::string_view>);

namespace {

struct Audited {
  int calls;
  const char* why;
};

// file (relative to the source root) -> number of Sql::trusted calls.
const std::map<std::string, Audited>& audited_trusted() {
  static const std::map<std::string, Audited> m = {
      {"shared/src/pg.cpp", {1, "session_setup statements from the process's own config"}},
      {"shared/src/pg_migrations.cpp", {1, "migration files embedded at build time"}},
      {"events/src/reader.cpp",
       {3, "constant column list; filter clauses with $n placeholders; ASC/DESC"}},
      {"events/src/subscription.cpp", {1, "constant timestamp format"}},
      {"projections/src/runner.cpp",
       {7, "DDL of the projection's code; validated [a-z0-9_] table/view names"}},
      {"services/registry/src/read_model.cpp",
       {2, "table names from TableNames; VALUES rows of $n placeholders"}},
      {"services/store/src/event_publisher.cpp", {1, "constant column list"}},
      {"services/store/src/event_sql.cpp", {1, "multi-row INSERT of $n placeholders"}},
      {"services/store/src/service.cpp", {1, "constant column list"}},
      {"services/edge/src/admin_api.cpp",
       {3, "configured table prefixes of read models; filter clauses with $n placeholders"}},
      {"projections/src/projection.cpp",
       {1, "Tables::sql: {name} -> this generation's [a-z0-9_] table names, nothing else"}},
      {"tests/support/plugin/test_plugin.cpp", {1, "the projection's view name"}},
      {"tests/integration/projections/support.hpp", {1, "dump(): relation and column names"}},
      {"tests/integration/registry/done_when_test.cpp",
       {3, "read-model DDL with a table prefix; table names"}},
      {"bench/events/bench_events.cpp", {2, "filter clauses with $n placeholders; EXPLAIN"}},
      {"bench/projections/bench_projections.cpp",
       {7, "the benchmark's own databases (quoted) and tables"}},
      {"bench/registry/bench_registry.cpp", {2, "the benchmark's own database (quoted)"}},
      {"bench/store/bench_store.cpp",
       {3, "the benchmark's own database (quoted); multi-row INSERT of $n placeholders"}},
  };
  return m;
}

// Files allowed to use libpqxx: the wrapper, and two audited helpers.
const std::map<std::string, const char*>& audited_pqxx() {
  static const std::map<std::string, const char*> m = {
      {"shared/src/pg.cpp", "the wrapper"},
      {"shared/src/process.cpp", "readiness probe: two constant statements"},
      {"tests/support/src/servers.cpp", "test databases: CREATE DATABASE with quote_name"},
  };
  return m;
}

std::size_t count(const std::string& text, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::map<std::string, std::string> sources() {
  const fs::path root(SB_SOURCE_DIR);
  std::map<std::string, std::string> out;
  for (const char* dir :
       {"shared", "broker", "events", "projections", "services", "tests", "bench"}) {
    if (!fs::exists(root / dir)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
      if (!entry.is_regular_file()) continue;
      const auto ext = entry.path().extension();
      if (ext != ".cpp" && ext != ".hpp" && ext != ".h" && ext != ".cc") continue;
      std::ifstream in(entry.path());
      std::stringstream ss;
      ss << in.rdbuf();
      out[fs::relative(entry.path(), root).generic_string()] = ss.str();
    }
  }
  return out;
}

}  // namespace

TEST(SqlCheck, LiteralsConvertAndRunTimeTextNeedsTheAuditedHatch) {
  const sb::pg::Sql literal = "SELECT 1";
  EXPECT_EQ(literal.text(), "SELECT 1");
  const auto built = sb::pg::Sql::trusted(std::string("SELECT ") + "2");
  EXPECT_EQ(built.text(), "SELECT 2");
  EXPECT_EQ(sb::pg::quote_identifier("a\"b"), "\"a\"\"b\"");
}

TEST(SqlCheck, EveryRunTimeStatementIsAudited) {
  const auto files = sources();
  ASSERT_GT(files.size(), 100u) << "source tree not found at " << SB_SOURCE_DIR;
  const std::string self = "tests/unit/shared/sql_check_test.cpp";
  for (const auto& [path, text] : files) {
    if (path == self || path == "shared/include/switchboard/shared/pg.hpp") continue;
    const auto n = count(text, "Sql::trusted(");
    const auto it = audited_trusted().find(path);
    const std::size_t allowed = it == audited_trusted().end() ? 0 : std::size_t(it->second.calls);
    EXPECT_EQ(n, allowed) << path << " calls pg::Sql::trusted " << n
                          << " times; audited: " << allowed
                          << ". Splice only identifiers/constants, never values, "
                          << "and record the call in " << self;
  }
  for (const auto& [path, audit] : audited_trusted()) {
    EXPECT_TRUE(files.count(path)) << "audited file is gone: " << path;
  }
}

TEST(SqlCheck, NothingButTheWrapperTalksToLibpqxx) {
  for (const auto& [path, text] : sources()) {
    if (path == "tests/unit/shared/sql_check_test.cpp") continue;
    const bool uses = text.find("<pqxx/") != std::string::npos ||
                      text.find("pqxx::") != std::string::npos ||
                      text.find("libpq-fe.h") != std::string::npos;
    if (uses) {
      EXPECT_TRUE(audited_pqxx().count(path))
          << path << " uses libpqxx directly, bypassing pg::Sql (use shared/pg.hpp)";
    }
  }
}

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "switchboard/shared/pg_migrations.hpp"

namespace sb::pg {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("sb_mig_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(PgMigrations, ChecksumIsSha256Hex) {
  EXPECT_EQ(migration_checksum("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(PgMigrations, ChecksumIgnoresCrlfButNotOtherChanges) {
  EXPECT_EQ(migration_checksum("a;\r\nb;\r\n"), migration_checksum("a;\nb;\n"));
  EXPECT_NE(migration_checksum("a;\nb;\n"), migration_checksum("a;\nb; \n"));
  EXPECT_NE(migration_checksum("a;\rb;"), migration_checksum("a;b;"));  // lone CR is content
}

TEST(PgMigrations, LoadsFilesInNumericOrder) {
  TempDir dir;
  dir.write("10_ten.sql", "SELECT 10;");
  dir.write("0002_two.sql", "SELECT 2;");
  dir.write("1_one-first.sql", "SELECT 1;");
  dir.write("README.md", "not a migration");
  auto set = load_migrations("store", dir.path());
  EXPECT_EQ(set.component, "store");
  ASSERT_EQ(set.migrations.size(), 3u);
  EXPECT_EQ(set.migrations[0].version, 1);
  EXPECT_EQ(set.migrations[0].name, "one-first");
  EXPECT_EQ(set.migrations[1].version, 2);
  EXPECT_EQ(set.migrations[1].name, "two");
  EXPECT_EQ(set.migrations[1].sql, "SELECT 2;");
  EXPECT_EQ(set.migrations[2].version, 10);
}

TEST(PgMigrations, MisnamedSqlFileIsAnError) {
  TempDir dir;
  dir.write("0001_ok.sql", "");
  dir.write("create_users.sql", "");
  EXPECT_THROW(load_migrations("store", dir.path()), MigrationError);
}

TEST(PgMigrations, DuplicateVersionIsAnError) {
  TempDir dir;
  dir.write("0001_a.sql", "");
  dir.write("1_b.sql", "");
  EXPECT_THROW(load_migrations("store", dir.path()), MigrationError);
}

TEST(PgMigrations, MissingDirectoryIsAnError) {
  EXPECT_THROW(load_migrations("store", "/nonexistent/sb/migrations"), MigrationError);
}

TEST(PgMigrations, ValidateSortsAndChecks) {
  MigrationSet set{"registry", {{3, "c", ""}, {1, "a", ""}, {2, "b", ""}}};
  validate(set);
  EXPECT_EQ(set.migrations[0].version, 1);
  EXPECT_EQ(set.migrations[2].version, 3);

  MigrationSet bad_component{"Store!", {{1, "a", ""}}};
  EXPECT_THROW(validate(bad_component), MigrationError);
  MigrationSet empty_component{"", {}};
  EXPECT_THROW(validate(empty_component), MigrationError);
  MigrationSet zero{"x", {{0, "a", ""}}};
  EXPECT_THROW(validate(zero), MigrationError);
  MigrationSet bad_name{"x", {{1, "has space", ""}}};
  EXPECT_THROW(validate(bad_name), MigrationError);
  MigrationSet dup{"x", {{1, "a", ""}, {1, "b", ""}}};
  EXPECT_THROW(validate(dup), MigrationError);
}

}  // namespace
}  // namespace sb::pg

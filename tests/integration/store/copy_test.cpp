// pg::CopyIn (COPY ... FROM STDIN) against a real PostgreSQL: escaping of
// every special character, NULL versus empty text, errors with the same
// types as exec, and an unfinished COPY never committing.
#include <gtest/gtest.h>

#include "switchboard/shared/pg.hpp"
#include "switchboard/testing/servers.hpp"

using namespace sb;
namespace tst = sb::testing;

namespace {

pg::ConnectOptions connect(const std::string& url) {
  pg::ConnectOptions o;
  o.url = url;
  return o;
}

struct Db {
  std::string url = tst::fresh_database("copy");
  pg::Connection c{connect(url)};
  Db() {
    c.exec(
        "CREATE TABLE t (id bigint PRIMARY KEY, label text, doc jsonb, at timestamptz, "
        "u uuid)");
  }
};

const std::vector<std::string> kColumns = {"id", "label", "doc", "at", "u"};

}  // namespace

TEST(PgCopy, EscapesEverySpecialCharacterAndKeepsNullDistinctFromEmpty) {
  Db db;
  const std::vector<std::string> labels = {
      "plain",       "tab\there", "new\nline",       "carriage\rreturn",
      "back\\slash", "\\N",       "ends with \\",    "",
      "ünïcødé ✓",   "\\.",       "quote\"s 'both'", "mixed\t\\\n\r\\N"};
  {
    auto tx = db.c.begin();
    auto copy = tx.copy_in("t", kColumns);
    std::int64_t id = 0;
    for (const auto& l : labels) {
      copy.integer(++id)
          .text(l)
          .text(R"({"k":"v\twith\\escapes\n","n":1})")
          .text("2026-11-22T08:00:01.123Z")
          .text("0190c6a2-7a4e-7cc0-8f00-000000000001")
          .end_row();
    }
    copy.integer(++id).null().null().null().null().end_row();
    EXPECT_EQ(copy.finish(), labels.size() + 1);
    tx.commit();
  }
  auto rows = db.c.exec(
      "SELECT id, label, doc->>'k', at = '2026-11-22T08:00:01.123Z', u::text "
      "FROM t ORDER BY id");
  ASSERT_EQ(rows.size(), labels.size() + 1);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    EXPECT_EQ(rows[i][1].get<std::string>(), labels[i]) << "row " << i;
    EXPECT_EQ(rows[i][2].get<std::string>(), "v\twith\\escapes\n");
    EXPECT_TRUE(rows[i][3].get<bool>());
    EXPECT_EQ(rows[i][4].get<std::string>(), "0190c6a2-7a4e-7cc0-8f00-000000000001");
  }
  const auto last = rows[labels.size()];
  EXPECT_TRUE(last[1].is_null());  // NULL, not the text "\N" or ""
  EXPECT_TRUE(last[2].is_null());
}

TEST(PgCopy, ManyRowsCrossChunkBoundaries) {
  Db db;
  const std::string big(3000, 'x');  // 64 KiB chunks: ~22 rows each
  constexpr std::int64_t kRows = 5000;
  {
    auto tx = db.c.begin();
    auto copy = tx.copy_in("t", kColumns);
    for (std::int64_t i = 1; i <= kRows; ++i) {
      copy.integer(i).text(big + std::to_string(i)).null().null().null().end_row();
    }
    EXPECT_EQ(copy.finish(), static_cast<std::uint64_t>(kRows));
    tx.commit();
  }
  auto r = db.c.exec("SELECT count(*), sum(length(label)), min(id), max(id) FROM t").one();
  EXPECT_EQ(r[0].get<std::int64_t>(), kRows);
  EXPECT_EQ(r[2].get<std::int64_t>(), 1);
  EXPECT_EQ(r[3].get<std::int64_t>(), kRows);
  auto one = db.c.exec("SELECT label FROM t WHERE id = 4321").one();
  EXPECT_EQ(one[0].get<std::string>(), big + "4321");
}

TEST(PgCopy, UniqueViolationIsReportedWithItsTypeAndNothingIsStored) {
  Db db;
  db.c.exec("INSERT INTO t (id) VALUES (2)");
  {
    auto tx = db.c.begin();
    auto copy = tx.copy_in("t", kColumns);
    for (std::int64_t i = 1; i <= 3; ++i) copy.integer(i).null().null().null().null().end_row();
    EXPECT_THROW(copy.finish(), pg::UniqueViolation);
  }  // aborted
  EXPECT_EQ(db.c.exec("SELECT count(*) FROM t").one()[0].get<std::int64_t>(), 1);
  // The session is fine afterwards.
  EXPECT_TRUE(db.c.is_open());
  auto tx = db.c.begin();
  auto copy = tx.copy_in("t", kColumns);
  copy.integer(7).text("after").null().null().null().end_row();
  copy.finish();
  tx.commit();
  EXPECT_EQ(db.c.exec("SELECT count(*) FROM t").one()[0].get<std::int64_t>(), 2);
}

TEST(PgCopy, BadValueIsAQueryErrorNamingTheProblem) {
  Db db;
  auto tx = db.c.begin();
  auto copy = tx.copy_in("t", kColumns);
  copy.integer(1).text("x").text("{not json").null().null().end_row();
  try {
    copy.finish();
    FAIL() << "expected a QueryError";
  } catch (const pg::QueryError& e) {
    EXPECT_EQ(e.sqlstate(), "22P02");  // invalid_text_representation
  }
}

TEST(PgCopy, WrongColumnCountIsAUsageErrorAndTheTransactionCannotCommit) {
  Db db;
  {
    auto tx = db.c.begin();
    {
      auto copy = tx.copy_in("t", kColumns);
      copy.integer(1).null().null().null().null().end_row();
      copy.integer(2).null();
      EXPECT_THROW(copy.end_row(), pg::UsageError);                               // 2 of 5 columns
      EXPECT_THROW(copy.integer(3).null().null().null().null(), pg::UsageError);  // 6 > 5
    }  // abandoned without finish()
    EXPECT_THROW(tx.commit(), pg::UsageError);
  }
  EXPECT_EQ(db.c.exec("SELECT count(*) FROM t").one()[0].get<std::int64_t>(), 0);
  EXPECT_TRUE(db.c.is_open());
}

TEST(PgCopy, IdentifiersAreCheckedNeverSpliced) {
  Db db;
  auto tx = db.c.begin();
  EXPECT_THROW(tx.copy_in("t; DROP TABLE t", kColumns), pg::UsageError);
  EXPECT_THROW(tx.copy_in("t", {"id", "label) FROM STDIN; --"}), pg::UsageError);
  EXPECT_THROW(tx.copy_in("t", {}), pg::UsageError);
}

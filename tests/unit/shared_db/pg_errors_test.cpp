#include <gtest/gtest.h>

#include <string>

#include "switchboard/shared/pg.hpp"

namespace sb::pg {
namespace {

// Runs throw_server_error and returns what it threw, as the root type.
template <class Expected>
Expected caught(const std::string& state) {
  try {
    throw_server_error("boom", state, "SELECT 1");
  } catch (const Expected& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "sqlstate " << state << " threw the wrong type: " << e.what();
  }
  throw std::logic_error("unreachable");
}

TEST(PgErrors, SerializationFailureIsRetryable) {
  auto e = caught<SerializationFailure>("40001");
  EXPECT_TRUE(e.is_retryable());
  EXPECT_EQ(e.sqlstate(), "40001");
  EXPECT_EQ(e.query(), "SELECT 1");
}

TEST(PgErrors, DeadlockIsRetryable) {
  EXPECT_TRUE(caught<DeadlockDetected>("40P01").is_retryable());
}

TEST(PgErrors, UniqueViolationIsNotRetryable) {
  auto e = caught<UniqueViolation>("23505");
  EXPECT_FALSE(e.is_retryable());
  EXPECT_EQ(e.sqlstate(), "23505");
}

TEST(PgErrors, ServerGoneIsAConnectionError) {
  for (const char* state : {"08006", "08001", "57P01", "57P02", "57P03", "53300"}) {
    auto e = caught<ConnectionError>(state);
    EXPECT_TRUE(e.is_retryable()) << state;
    EXPECT_EQ(e.sqlstate(), state);
  }
}

TEST(PgErrors, OtherServerErrorsAreQueryErrorsNotRetried) {
  for (const char* state : {"42P01", "42601", "23503", "57014", "40003", ""}) {
    try {
      throw_server_error("boom", state, "q");
      FAIL() << "did not throw";
    } catch (const SerializationFailure&) {
      FAIL() << state;
    } catch (const DeadlockDetected&) {
      FAIL() << state;
    } catch (const UniqueViolation&) {
      FAIL() << state;
    } catch (const QueryError& e) {
      EXPECT_FALSE(e.is_retryable()) << state;
      EXPECT_EQ(e.sqlstate(), state);
    }
  }
}

TEST(PgErrors, OneRootAndInDoubtIsNeverRetryable) {
  InDoubtError in_doubt("commit outcome unknown");
  const Error& root = in_doubt;
  EXPECT_FALSE(root.is_retryable());
  const Error& timeout = PoolTimeout("pool");
  EXPECT_FALSE(timeout.is_retryable());
  const Error& conn = ConnectionError("gone");
  EXPECT_TRUE(conn.is_retryable());
  const std::exception& std_root = in_doubt;
  EXPECT_STREQ(std_root.what(), "commit outcome unknown");
}

}  // namespace
}  // namespace sb::pg

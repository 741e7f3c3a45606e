// libpqxx 6.4 leaks the PGresult of a query that discovers a lost connection
// (connection_base::make_result asks for the client encoding, which throws
// once the connection is bad, before the result is owned). These tests lose
// connections on purpose, so LeakSanitizer in the sanitizer build would fail
// them for a third-party bug. Only that library's allocations are excused.
extern "C" const char* __lsan_default_suppressions();
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libpqxx-6.4.so\n";
}

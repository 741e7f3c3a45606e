# Test tiers are ctest labels: unit (no servers), integration and e2e (real
# RabbitMQ, PostgreSQL and Redis). The servers are a ctest fixture: started
# once per ctest run in a temp folder before the first test that needs them,
# and stopped after the last one, also when tests fail. scripts/test.sh
# additionally stops them when the run is interrupted.
include(GoogleTest)

set(SB_TEST_POINTER ${CMAKE_BINARY_DIR}/test-servers.path)

# `unit_tests` builds just the unit tier (what the sanitizer build needs).
add_custom_target(unit_tests)

add_test(NAME sb_servers_up
         COMMAND ${CMAKE_SOURCE_DIR}/scripts/test-servers.sh up ${SB_TEST_POINTER})
set_tests_properties(sb_servers_up PROPERTIES FIXTURES_SETUP sb_servers TIMEOUT 180
                     LABELS "integration;e2e")
add_test(NAME sb_servers_down
         COMMAND ${CMAKE_SOURCE_DIR}/scripts/test-servers.sh down ${SB_TEST_POINTER})
set_tests_properties(sb_servers_down PROPERTIES FIXTURES_CLEANUP sb_servers TIMEOUT 120
                     LABELS "integration;e2e")

# sb_add_test(name LABEL unit|integration|e2e SOURCES ... [LIBS ...] [TIMEOUT s] [SERIAL])
# SERIAL marks tests that restart or freeze a shared server: they run alone.
function(sb_add_test name)
  cmake_parse_arguments(ARG "SERIAL" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} sb_test_support GTest::gtest GTest::gmock GTest::gtest_main)
  sb_target_warnings(${name})
  add_test(NAME ${name} COMMAND ${name} --gtest_color=no)
  set_tests_properties(${name} PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABEL STREQUAL "unit")
    add_dependencies(unit_tests ${name})
  endif()
  if(NOT ARG_LABEL STREQUAL "unit")
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED sb_servers
                         ENVIRONMENT "SB_TEST_SERVERS_POINTER=${SB_TEST_POINTER};SB_SOURCE_DIR=${CMAKE_SOURCE_DIR};SB_BINARY_DIR=${CMAKE_BINARY_DIR}")
  else()
    set_tests_properties(${name} PROPERTIES
                         ENVIRONMENT "SB_SOURCE_DIR=${CMAKE_SOURCE_DIR};SB_BINARY_DIR=${CMAKE_BINARY_DIR}")
  endif()
  if(ARG_SERIAL)
    set_tests_properties(${name} PROPERTIES RUN_SERIAL TRUE)
  endif()
endfunction()

# Warnings are errors for our own code; third-party headers come in as SYSTEM.
# -Wno-restrict: g++ 12 reports false positives on std::string concatenation
# at -O3 (GCC bug 105329). -Wnull-dereference is left out: at -O3 it fires
# inside RapidJSON's inlined schema templates, where we cannot act on it.
function(sb_target_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Werror
    -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual
    -Wconversion -Wsign-conversion -Wdouble-promotion
    -Wimplicit-fallthrough -Wformat=2 -Wno-restrict)
endfunction()

# A library of ours: public headers under include/, private code under src/.
# Usage: sb_add_library(name SOURCES ... PUBLIC_DEPS ... PRIVATE_DEPS ...)
function(sb_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                     PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  sb_target_warnings(${name})
endfunction()

# A program of ours (a service's main, a tool, a benchmark).
function(sb_add_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  sb_target_warnings(${name})
endfunction()

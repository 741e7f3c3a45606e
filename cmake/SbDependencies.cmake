# Every third-party dependency comes from a Debian package (scripts/packages.txt)
# and is wrapped in an imported target named sbdep::<name>. Headers of these
# targets are SYSTEM so their warnings do not fail our -Werror build.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

macro(sb_pkg name module)
  pkg_check_modules(SBPC_${name} REQUIRED IMPORTED_TARGET GLOBAL ${module})
  add_library(sbdep::${name} ALIAS PkgConfig::SBPC_${name})
endmacro()

sb_pkg(rabbitmq librabbitmq)
sb_pkg(uv libuv)
sb_pkg(pqxx libpqxx)
sb_pkg(hiredis hiredis)
sb_pkg(httplib cpp-httplib)
sb_pkg(sodium libsodium)
sb_pkg(openssl openssl)
sb_pkg(rapidjson RapidJSON)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
add_library(sbdep_spdlog INTERFACE)
target_link_libraries(sbdep_spdlog INTERFACE spdlog::spdlog fmt::fmt)
add_library(sbdep::spdlog ALIAS sbdep_spdlog)

# pkg-config imported targets mark their include dirs as non-system: fix that.
foreach(t SBPC_rabbitmq SBPC_uv SBPC_pqxx SBPC_hiredis SBPC_httplib SBPC_sodium SBPC_openssl SBPC_rapidjson)
  get_target_property(_inc PkgConfig::${t} INTERFACE_INCLUDE_DIRECTORIES)
  if(_inc)
    set_target_properties(PkgConfig::${t} PROPERTIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${_inc}")
  endif()
endforeach()

if(SB_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(SB_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

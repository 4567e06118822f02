# Checks `coport-bench --list` against the committed list, byte for byte:
# a benchmark, ratio or figure lost, renamed, described otherwise or moved
# (the list's order is the order of the runs and of the results) fails.
# The committed list is a tree's with the admin server (coport::admin);
# without it, its admin lines are left out of what is expected.
#
#   cmake -DBENCH=<coport-bench> -DEXPECTED=<file> -DHAS_ADMIN=<bool> -DACTUAL=<file> -P check_bench_list.cmake
#
# ACTUAL is where the list written is kept, to diff against EXPECTED.

cmake_minimum_required(VERSION 3.25)

foreach(var BENCH EXPECTED HAS_ADMIN ACTUAL)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "usage: cmake -DBENCH=<coport-bench> -DEXPECTED=<file> -DHAS_ADMIN=<bool> "
                        "-DACTUAL=<file> -P check_bench_list.cmake")
  endif()
endforeach()

execute_process(COMMAND "${BENCH}" --list RESULT_VARIABLE status OUTPUT_VARIABLE listed ERROR_VARIABLE err)
file(WRITE "${ACTUAL}" "${listed}")
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${BENCH} --list exited with ${status}:\n${err}")
endif()
if(NOT err STREQUAL "")
  message(FATAL_ERROR "${BENCH} --list wrote on stderr:\n${err}")
endif()

file(READ "${EXPECTED}" expected)
if(NOT HAS_ADMIN)
  # Lines of admin figures ("admin.") and of their ratios ("ratio admin.");
  # the first line of the list is never one.
  string(REGEX REPLACE "\n(ratio )?admin\\.[^\n]*" "" expected "${expected}")
endif()
if(NOT listed STREQUAL expected)
  message(FATAL_ERROR "${BENCH} --list differs from ${EXPECTED}: diff ${EXPECTED} ${ACTUAL}")
endif()
message(STATUS "${BENCH} --list: as ${EXPECTED}")

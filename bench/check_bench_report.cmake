# Checks the page written by `coport-bench --report DIR`: DIR/index.html and
# DIR/results.json exist; the page has a bar chart (inline SVG) with a bar
# per ratio of results.json, a floors table and the machine table, and
# fetches nothing (no http(s) address outside the SVG namespace, no src=,
# no script).
#
#   cmake -DREPORT_DIR=<dir> -P check_bench_report.cmake

cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED REPORT_DIR)
  message(FATAL_ERROR "usage: cmake -DREPORT_DIR=<dir> -P check_bench_report.cmake")
endif()
foreach(f index.html results.json)
  if(NOT EXISTS "${REPORT_DIR}/${f}")
    message(FATAL_ERROR "${REPORT_DIR}/${f} does not exist")
  endif()
endforeach()

file(READ "${REPORT_DIR}/index.html" page)
set(problems "")
foreach(needed "<svg" "Floors" "Machine and run" "aims met")
  string(FIND "${page}" "${needed}" at)
  if(at EQUAL -1)
    string(APPEND problems "the page has no '${needed}'\n")
  endif()
endforeach()
string(REPLACE "http://www.w3.org/2000/svg" "" fetchable "${page}")
foreach(forbidden "http://" "https://" "src=" "<script" "@import" "url(")
  string(FIND "${fetchable}" "${forbidden}" at)
  if(NOT at EQUAL -1)
    string(APPEND problems "the page contains '${forbidden}': it must not fetch anything\n")
  endif()
endforeach()

# One bar per ratio: each ratio's name appears in the chart.
file(STRINGS "${REPORT_DIR}/results.json" lines)
set(ratios 0)
foreach(line IN LISTS lines)
  string(JSON kind ERROR_VARIABLE err GET "${line}" kind)
  if(NOT kind STREQUAL "ratio")
    continue()
  endif()
  math(EXPR ratios "${ratios} + 1")
  string(JSON name GET "${line}" name)
  string(FIND "${page}" "${name}" at)
  if(at EQUAL -1)
    string(APPEND problems "ratio ${name} is not on the page\n")
  endif()
endforeach()
if(ratios EQUAL 0)
  string(APPEND problems "results.json has no ratio\n")
endif()
if(problems)
  message(FATAL_ERROR "${REPORT_DIR}/index.html:\n${problems}")
endif()
message(STATUS "${REPORT_DIR}/index.html: ${ratios} ratios on the page, nothing fetched")

# Checks the file written by `coport-bench --json`: one JSON object per line,
# each with a name, a unit and a finite positive value; each ratio also with
# finite positive numerator, denominator and ratio, an aim (number or null)
# and met (boolean or null). Shape only: no figure is compared with a speed.
#
#   cmake -DBENCH_JSON=<file> [-DMIN_MEASUREMENTS=<n>] [-DMIN_RATIOS=<n>] [-DMIN_MEMORY=<n>]
#         [-DMIN_THROUGHPUT=<n>] [-DMIN_SIZE=<n>] [-DREQUIRED=<name>,<name>...] -P check_bench_json.cmake
#
# REQUIRED names lines that must be there (a ratio is named
# "<numerator>/<denominator>"). A file with broker figures (names
# "rabbit.*") must also have the floor's, rabbitmq-c alone, and coport's
# ratios to it: rabbit.amqp.calls_per_s_c1 and _c50,
# rabbit.coport_over_amqp_c1 and _c50, rabbit.coport_over_amqp_latency_c1.
#
# Memory figures ("kind": "memory") have a positive value in bytes, a
# positive "parked" count, an aim and met. Call figures ("kind":
# "throughput") have positive calls/s, p50_us and p99_us, p50 <= p99.
# Size figures ("kind": "size", the admin server's /metrics body) have a
# positive value in bytes, and positive "series" and "points" counts.
# Broker figures ("kind": "external") have a name, unit and positive value.
#
# KEYS_<kind> (e.g. -DKEYS_ratio=name,kind,value,...), given for a kind,
# pins the keys of that kind's lines and their order: a line of that kind
# with a key more, a key less or the keys in another order fails.

cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED BENCH_JSON)
  message(FATAL_ERROR "usage: cmake -DBENCH_JSON=<file> -P check_bench_json.cmake")
endif()
if(NOT EXISTS "${BENCH_JSON}")
  message(FATAL_ERROR "${BENCH_JSON} does not exist")
endif()
if(NOT DEFINED MIN_MEASUREMENTS)
  set(MIN_MEASUREMENTS 1)
endif()
if(NOT DEFINED MIN_RATIOS)
  set(MIN_RATIOS 0)
endif()

set(problems "")

# check_type(<line> <where> <key> <types...>): the field exists and has one
# of the types; otherwise a line is added to `problems`.
function(check_type line where key)
  set(types ${ARGN})
  string(JSON type ERROR_VARIABLE err TYPE "${line}" ${key})
  if(err)
    string(APPEND problems "${where}: no field '${key}'\n")
  elseif(NOT type IN_LIST types)
    string(APPEND problems "${where}: field '${key}' is ${type}, expected ${types}\n")
  endif()
  set(problems "${problems}" PARENT_SCOPE)
endfunction()

# check_positive(<line> <where> <key>): the field is a finite number > 0.
function(check_positive line where key)
  string(JSON type ERROR_VARIABLE err TYPE "${line}" ${key})
  if(err OR NOT type STREQUAL "NUMBER")
    string(APPEND problems "${where}: field '${key}' is not a number\n")
  else()
    string(JSON v GET "${line}" ${key})
    # A plain unsigned decimal: excludes signs and any spelling of inf or nan.
    if(NOT v MATCHES "^[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$"
       OR NOT v GREATER 0 OR NOT v LESS 1e300)
      string(APPEND problems "${where}: field '${key}' = ${v} is not a finite positive number\n")
    endif()
  endif()
  set(problems "${problems}" PARENT_SCOPE)
endfunction()

# Lines are cut out one by one rather than made into a CMake list: a list
# would split a line at a ';' inside a JSON string, and merge lines around
# an unbalanced '['.
file(READ "${BENCH_JSON}" rest)
set(line_no 0)
set(names "")
set(measurements 0)
set(ratios 0)
set(memory 0)
set(throughput 0)
set(sizes 0)
while(NOT rest STREQUAL "")
  string(FIND "${rest}" "\n" eol)
  if(eol EQUAL -1)
    set(line "${rest}")
    set(rest "")
  else()
    string(SUBSTRING "${rest}" 0 ${eol} line)
    math(EXPR eol "${eol} + 1")
    string(SUBSTRING "${rest}" ${eol} -1 rest)
  endif()
  math(EXPR line_no "${line_no} + 1")
  if(line STREQUAL "")
    continue()
  endif()
  set(where "${BENCH_JSON}:${line_no}")
  string(JSON type ERROR_VARIABLE err TYPE "${line}")
  if(err OR NOT type STREQUAL "OBJECT")
    string(APPEND problems "${where}: not a JSON object: ${err}\n")
    continue()
  endif()
  check_type("${line}" "${where}" name STRING)
  string(JSON name ERROR_VARIABLE err GET "${line}" name)
  if(NOT err)
    list(APPEND names "${name}")
  endif()
  check_type("${line}" "${where}" unit STRING)
  check_type("${line}" "${where}" kind STRING)
  check_positive("${line}" "${where}" value)
  string(JSON kind ERROR_VARIABLE err GET "${line}" kind)
  if(DEFINED KEYS_${kind})
    # string(JSON MEMBER) gives the keys sorted, so they are read from the
    # text in order: a key is a quoted word right after '{' or ',' and
    # before ':' (the program writes its lines without spaces).
    string(REGEX MATCHALL "[{,]\"[A-Za-z0-9_]+\":" keys "${line}")
    string(REGEX REPLACE "[{,]\"([A-Za-z0-9_]+)\":" "\\1" keys "${keys}")
    string(REPLACE ";" "," keys "${keys}")
    if(NOT keys STREQUAL KEYS_${kind})
      string(APPEND problems "${where}: the keys of a ${kind} line are ${keys}, expected ${KEYS_${kind}}\n")
    endif()
  endif()
  if(kind STREQUAL "ratio")
    math(EXPR ratios "${ratios} + 1")
    check_positive("${line}" "${where}" ratio)
    check_positive("${line}" "${where}" numerator)
    check_positive("${line}" "${where}" denominator)
    check_type("${line}" "${where}" aim NUMBER NULL)
    check_type("${line}" "${where}" met BOOLEAN NULL)
  elseif(kind STREQUAL "measurement")
    math(EXPR measurements "${measurements} + 1")
  elseif(kind STREQUAL "memory")
    math(EXPR memory "${memory} + 1")
    check_positive("${line}" "${where}" parked)
    check_type("${line}" "${where}" aim NUMBER NULL)
    check_type("${line}" "${where}" met BOOLEAN NULL)
  elseif(kind STREQUAL "throughput")
    math(EXPR throughput "${throughput} + 1")
    check_positive("${line}" "${where}" p50_us)
    check_positive("${line}" "${where}" p99_us)
    string(JSON p50 ERROR_VARIABLE err GET "${line}" p50_us)
    string(JSON p99 ERROR_VARIABLE err GET "${line}" p99_us)
    if(p50 GREATER p99)
      string(APPEND problems "${where}: p50_us ${p50} above p99_us ${p99}\n")
    endif()
  elseif(kind STREQUAL "size")
    math(EXPR sizes "${sizes} + 1")
    check_positive("${line}" "${where}" series)
    check_positive("${line}" "${where}" points)
  elseif(kind STREQUAL "external")
    # checked above: name, unit, value
  else()
    string(APPEND problems "${where}: unknown kind '${kind}'\n")
  endif()
endwhile()

if(measurements LESS MIN_MEASUREMENTS)
  string(APPEND problems "${measurements} measurements, expected at least ${MIN_MEASUREMENTS}\n")
endif()
if(DEFINED MIN_MEMORY AND memory LESS MIN_MEMORY)
  string(APPEND problems "${memory} memory figures, expected at least ${MIN_MEMORY}\n")
endif()
if(DEFINED MIN_THROUGHPUT AND throughput LESS MIN_THROUGHPUT)
  string(APPEND problems "${throughput} call figures, expected at least ${MIN_THROUGHPUT}\n")
endif()
if(DEFINED MIN_SIZE AND sizes LESS MIN_SIZE)
  string(APPEND problems "${sizes} size figures, expected at least ${MIN_SIZE}\n")
endif()
if(ratios LESS MIN_RATIOS)
  string(APPEND problems "${ratios} ratios, expected at least ${MIN_RATIOS}\n")
endif()
set(required "")
if(DEFINED REQUIRED)
  string(REPLACE "," ";" required "${REQUIRED}")
endif()
set(rabbit_lines ${names})
list(FILTER rabbit_lines INCLUDE REGEX "^rabbit[.]")
if(rabbit_lines)
  list(APPEND required rabbit.amqp.calls_per_s_c1 rabbit.amqp.calls_per_s_c50 rabbit.coport_over_amqp_c1
       rabbit.coport_over_amqp_c50 rabbit.coport_over_amqp_latency_c1)
endif()
foreach(name IN LISTS required)
  if(NOT name IN_LIST names)
    string(APPEND problems "no line named ${name}\n")
  endif()
endforeach()
if(problems)
  message(FATAL_ERROR "${BENCH_JSON} is not well formed:\n${problems}")
endif()
message(STATUS "${BENCH_JSON}: ${measurements} measurements, ${ratios} ratios, ${memory} memory figures, "
               "${throughput} call figures, ${sizes} size figures, well formed")

# coport_library(<folder> <sources...>): library target coport_<folder> with
# alias coport::<folder>, public headers in <folder>/include, installed and
# exported.
function(coport_library folder)
  set(target coport_${folder})
  add_library(${target} ${ARGN})
  add_library(coport::${folder} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${folder} OUTPUT_NAME coport_${folder}
                                             POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/${folder}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  coport_warnings(${target})
  install(TARGETS ${target} EXPORT coportTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${folder}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

# Warnings (and fuzzing coverage, when asked for) on coport's own targets
# only. Sanitizers apply to every object of the tree (CMakeLists.txt).
function(coport_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(COPORT_FUZZ)
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()

# coport_expect_test(NAME <name> [EXIT <status>] [OUTPUT <regex>...]
#                    [STDOUT <regex>...] [STDERR <regex>...]
#                    [NOT_OUTPUT <regex>...] COMMAND <command> [<arg>...])
# A ctest entry that checks the command's exit status (0 unless EXIT says
# otherwise) *and* its output, and fails on any sanitizer report: ctest's
# own PASS_REGULAR_EXPRESSION ignores the exit status
# (tests/support/expect_run.py does the checking).
function(coport_expect_test)
  cmake_parse_arguments(E "" "NAME;EXIT" "OUTPUT;STDOUT;STDERR;NOT_OUTPUT;COMMAND" ${ARGN})
  if(NOT E_NAME OR NOT E_COMMAND)
    message(FATAL_ERROR "coport_expect_test needs NAME and COMMAND")
  endif()
  if(NOT DEFINED E_EXIT)
    set(E_EXIT 0)
  endif()
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  set(checks --exit ${E_EXIT})
  foreach(kind IN ITEMS OUTPUT STDOUT STDERR NOT_OUTPUT)
    string(TOLOWER ${kind} flag)
    string(REPLACE "_" "-" flag ${flag})
    foreach(re IN LISTS E_${kind})
      list(APPEND checks --${flag} ${re})
    endforeach()
  endforeach()
  add_test(NAME ${E_NAME}
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/support/expect_run.py ${checks} -- ${E_COMMAND})
endfunction()

# The RabbitMQ tests run the distribution's Python (which has
# oslo.messaging), start private rabbitmq-server brokers and, but for
# rabbit_driver, drive the example programs.
# coport_rabbit_tests_missing(<var> [WITHOUT_EXAMPLES]) sets <var> to why
# they cannot run in this tree, or to "" when they can.
set(COPORT_RABBIT_PYTHON /usr/bin/python3)
set(COPORT_RABBIT_SERVER /usr/lib/rabbitmq/bin/rabbitmq-server)
function(coport_rabbit_tests_missing var)
  cmake_parse_arguments(M "WITHOUT_EXAMPLES" "" "" ${ARGN})
  set(packages)
  if(NOT EXISTS ${COPORT_RABBIT_PYTHON})
    list(APPEND packages "${COPORT_RABBIT_PYTHON}")
  elseif(NOT EXISTS /usr/lib/python3/dist-packages/oslo_messaging)
    list(APPEND packages "python3-oslo.messaging")
  endif()
  if(NOT EXISTS ${COPORT_RABBIT_SERVER})
    list(APPEND packages "rabbitmq-server (${COPORT_RABBIT_SERVER})")
  endif()
  set(missing)
  if(packages)
    list(JOIN packages ", " packages)
    list(APPEND missing "${packages}, which scripts/setup.sh installs")
  endif()
  if(NOT COPORT_BUILD_EXAMPLES AND NOT M_WITHOUT_EXAMPLES)
    list(APPEND missing "the example programs (COPORT_BUILD_EXAMPLES=ON)")
  endif()
  if(missing)
    list(JOIN missing "; and " missing)
    set(${var} "it needs ${missing}" PARENT_SCOPE)
  else()
    set(${var} "" PARENT_SCOPE)
  endif()
endfunction()

# coport_skipped_test(<name> <reason> [LABELS <labels>]): a ctest entry that
# shows as skipped with its reason, for a test this tree cannot run. With
# COPORT_REQUIRE_RABBIT_TESTS (scripts/build.sh sets it: on the README's path
# every test must run), configuring fails instead.
function(coport_skipped_test name reason)
  cmake_parse_arguments(S "" "" "LABELS" ${ARGN})
  if(COPORT_REQUIRE_RABBIT_TESTS)
    message(FATAL_ERROR "${name} cannot run: ${reason}")
  endif()
  message(STATUS "${name}: skipped, ${reason}")
  add_test(NAME ${name} COMMAND sh -c "echo \"skipped: $1\" && exit 77" sh "${reason}")
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 LABELS "${S_LABELS}")
endfunction()

# coport_library(<folder> <sources...>): library target coport_<folder> with
# alias coport::<folder>, public headers in <folder>/include, installed and
# exported as the package component <folder> (its own export set,
# coport_<folder>_targets; coport_install_package writes the rest).
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
  set_property(GLOBAL APPEND PROPERTY COPORT_COMPONENTS ${folder})
  install(TARGETS ${target} EXPORT coport_${folder}_targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${folder}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

# coport_precompile(<target> <headers>...): the target's sources parse these
# headers once, precompiled (COPORT_PCH). Only for targets of many sources
# that all include most of them: a program of one source gains nothing.
function(coport_precompile target)
  if(COPORT_PCH)
    target_precompile_headers(${target} PRIVATE ${ARGN})
  endif()
endfunction()

# coport_install_package([NOT_BUILT <component> <option>...]): installs the
# package config behind find_package(coport [COMPONENTS <component>...]).
# Every coport_library is a component with its own targets file; the config
# (cmake/coportConfig.cmake.in) loads an asked-for component, the
# components it needs and the packages their targets link, and nothing
# else. What each component needs is read here from what its target links
# (PRIVATE links too: the libraries are static, so those reach a consumer's
# link), so the package cannot drift from the build; a link to a package
# this function does not know stops the configure. NOT_BUILT names the
# components this tree leaves out and the option that did, for the config's
# message to a consumer who asks for one. Call it once all libraries exist.
function(coport_install_package)
  cmake_parse_arguments(P "" "" "NOT_BUILT" ${ARGN})
  get_property(components GLOBAL PROPERTY COPORT_COMPONENTS)
  set(destination ${CMAKE_INSTALL_LIBDIR}/cmake/coport)
  foreach(c IN LISTS components)
    set(needs_${c})
    set(boost_${c})
    set(packages_${c})
    get_target_property(links coport_${c} LINK_LIBRARIES)
    get_target_property(interface_links coport_${c} INTERFACE_LINK_LIBRARIES)
    foreach(lib IN LISTS links interface_links)
      if(NOT lib)
        continue()
      endif()
      if(lib MATCHES "^\\$<LINK_ONLY:(.+)>$")
        set(lib "${CMAKE_MATCH_1}")
      endif()
      if(NOT TARGET "${lib}")
        message(FATAL_ERROR "coport_${c} links '${lib}', which is not a target: the package config "
          "could not find it for a consumer (link an imported target instead)")
      endif()
      get_target_property(real "${lib}" ALIASED_TARGET)
      if(NOT real)
        set(real "${lib}")
      endif()
      get_target_property(imported "${real}" IMPORTED)
      if(NOT imported)
        # Built here: another component, or a helper exported with this one
        # (Boost.Fiber built from source).
        if(real MATCHES "^coport_(.+)$" AND CMAKE_MATCH_1 IN_LIST components)
          list(APPEND needs_${c} ${CMAKE_MATCH_1})
        endif()
      elseif(lib MATCHES "^Boost::(.+)$")
        list(APPEND boost_${c} ${CMAKE_MATCH_1})
      elseif(lib MATCHES "^Threads::")
        list(APPEND packages_${c} Threads)
      elseif(lib MATCHES "^spdlog::")
        list(APPEND packages_${c} spdlog)
      elseif(lib MATCHES "^rabbitmq::")
        list(APPEND packages_${c} rabbitmq-c)
      elseif(lib MATCHES "^prometheus-cpp::")
        list(APPEND packages_${c} prometheus-cpp)
      else()
        message(FATAL_ERROR "coport_${c} links ${lib}: say in coport_install_package "
          "(cmake/CoportTargets.cmake) which package provides it")
      endif()
    endforeach()
    foreach(list IN ITEMS needs boost packages)
      if(${list}_${c})
        list(REMOVE_DUPLICATES ${list}_${c})
      endif()
    endforeach()
  endforeach()

  # Dependency order, each component after the ones it needs (their targets
  # files must be loaded first), and what each needs, directly or not.
  set(ordered)
  set(left ${components})
  while(left)
    set(progress FALSE)
    foreach(c IN LISTS left)
      set(ready TRUE)
      foreach(d IN LISTS needs_${c})
        if(NOT d IN_LIST ordered)
          set(ready FALSE)
        endif()
      endforeach()
      if(ready)
        set(all_${c} ${needs_${c}})
        foreach(d IN LISTS needs_${c})
          list(APPEND all_${c} ${all_${d}})
        endforeach()
        list(APPEND ordered ${c})
        list(REMOVE_ITEM left ${c})
        set(progress TRUE)
      endif()
    endforeach()
    if(NOT progress)
      message(FATAL_ERROR "coport's components need each other in a cycle: ${left}")
    endif()
  endwhile()

  set(table "set(_coport_installed ${ordered})\n")
  foreach(c IN LISTS ordered)
    # In dependency order, so that the config can load them in its order.
    set(needs)
    foreach(d IN LISTS ordered)
      if(d IN_LIST all_${c})
        list(APPEND needs ${d})
      endif()
    endforeach()
    string(APPEND table "set(_coport_needs_${c} ${needs})\n"
                        "set(_coport_packages_${c} ${packages_${c}})\n"
                        "set(_coport_boost_${c} ${boost_${c}})\n")
    install(EXPORT coport_${c}_targets FILE coport-${c}-targets.cmake NAMESPACE coport::
            DESTINATION ${destination})
  endforeach()
  while(P_NOT_BUILT)
    list(POP_FRONT P_NOT_BUILT c option)
    string(APPEND table "set(_coport_not_built_${c} \"${option}\")\n")
  endwhile()

  set(COPORT_PACKAGE_TABLE "${table}")
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/coportConfig.cmake.in
    "${PROJECT_BINARY_DIR}/coportConfig.cmake"
    INSTALL_DESTINATION ${destination})
  write_basic_package_version_file("${PROJECT_BINARY_DIR}/coportConfigVersion.cmake"
    COMPATIBILITY SameMinorVersion)
  install(FILES "${PROJECT_BINARY_DIR}/coportConfig.cmake" "${PROJECT_BINARY_DIR}/coportConfigVersion.cmake"
    DESTINATION ${destination})
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

# Configures, builds and runs a consumer project (SOURCE_DIR) against the
# coport installed in PREFIX (install_package.cmake), with find_package(coport):
# what a user's project does.
#   HIDE=<package>,...        packages the consumer's find_package may not
#                             find (CMAKE_DISABLE_FIND_PACKAGE_<package>)
#   DEFINES=<var=value>|...   more cache entries for the consumer
#   CONFIGURE_FAILS=<regex>   configuring must fail, saying this; no build
#   OUTPUT=<regex>            what the program PROGRAM must print (exit 0)
#   NOT_LOADED=<regex>        no file the linker loaded for PROGRAM (its
#                             map, <program>.map) may match
foreach(var PREFIX WORK_DIR SOURCE_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")

set(args -S "${SOURCE_DIR}" -B "${WORK_DIR}" -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release
         "-DCMAKE_PREFIX_PATH=${PREFIX}")
if(LAUNCHER)
  list(APPEND args "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()
string(REPLACE "," ";" HIDE "${HIDE}")
foreach(package IN LISTS HIDE)
  list(APPEND args "-DCMAKE_DISABLE_FIND_PACKAGE_${package}=ON")
endforeach()
string(REPLACE "|" ";" DEFINES "${DEFINES}")
foreach(define IN LISTS DEFINES)
  list(APPEND args "-D${define}")
endforeach()

message(STATUS "configuring ${SOURCE_DIR}: ${args}")
execute_process(COMMAND ${CMAKE_COMMAND} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(DEFINED CONFIGURE_FAILS)
  if(rc EQUAL 0)
    message(FATAL_ERROR "configuring succeeded; it should have failed saying '${CONFIGURE_FAILS}':\n${out}\n${err}")
  endif()
  # CMake wraps long messages: compare with the line breaks and indents gone.
  string(REGEX REPLACE "[ \n]+" " " flat "${err}")
  if(NOT flat MATCHES "${CONFIGURE_FAILS}")
    message(FATAL_ERROR "configuring failed without saying '${CONFIGURE_FAILS}':\n${err}")
  endif()
  message(STATUS "configuring failed as it should:\n${err}")
  return()
endif()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring failed (${rc}):\n${out}\n${err}")
endif()
message(STATUS "${out}")

execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building failed (${rc}):\n${out}\n${err}")
endif()
if(NOT DEFINED PROGRAM)
  return()
endif()

if(DEFINED NOT_LOADED)
  file(STRINGS "${WORK_DIR}/${PROGRAM}.map" loaded REGEX "^LOAD ")
  if(NOT loaded)
    message(FATAL_ERROR "${WORK_DIR}/${PROGRAM}.map lists no loaded file")
  endif()
  foreach(line IN LISTS loaded)
    if(line MATCHES "${NOT_LOADED}")
      message(FATAL_ERROR "${PROGRAM} links what it must not: ${line}")
    endif()
  endforeach()
  list(LENGTH loaded count)
  message(STATUS "${PROGRAM}: the linker loaded ${count} files, none matching ${NOT_LOADED}")
endif()

execute_process(COMMAND "${WORK_DIR}/${PROGRAM}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "${OUTPUT}")
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}, expected 0 and output matching '${OUTPUT}':\n${out}\n${err}")
endif()
message(STATUS "${PROGRAM} built against the installed package and ran: ${out}")

# Installs the coport build tree BUILD_DIR into a fresh PREFIX: the one
# installed package every consumer test of this folder builds against.
foreach(var BUILD_DIR PREFIX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_package.cmake: ${var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${PREFIX}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}):\n${out}\n${err}")
endif()
file(GLOB targets_files "${PREFIX}/*/cmake/coport/coport-*-targets.cmake")
list(LENGTH targets_files count)
message(STATUS "coport installed into ${PREFIX}: ${count} component targets files")

# Configures the guide's ```cmake block (phase 5: link the coroutine side
# only) in a project that adds coport's source tree without fibers, the way
# a service's own build would see an installed fiberless coport. The block's
# find_package(coport) finds the targets already added; its sources are
# stubs. Configuring fails if the block links a target that needs the fiber
# side, since the fiberless tree has none.
foreach(var GUIDE_CMAKE COPORT_SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_cmake_block.cmake: ${var} is not set")
  endif()
endforeach()

file(STRINGS "${GUIDE_CMAKE}" block_lines REGEX "[^ ]")
list(FILTER block_lines EXCLUDE REGEX "^#")
if(NOT block_lines)
  message(FATAL_ERROR "${GUIDE_CMAKE} holds no CMake line: the guide lost its ```cmake block")
endif()
file(READ "${GUIDE_CMAKE}" block)
string(REGEX MATCHALL "add_executable\\([^)]*\\)" executables "${block}")
if(NOT executables)
  message(FATAL_ERROR "the guide's ```cmake block adds no executable")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
set(src "${WORK_DIR}/src")
file(MAKE_DIRECTORY "${src}" "${WORK_DIR}/config")
# Stub sources for every file the block's executables name.
foreach(exe IN LISTS executables)
  string(REGEX REPLACE "^add_executable\\([^ ]+ (.*)\\)$" "\\1" files "${exe}")
  separate_arguments(files)
  foreach(f IN LISTS files)
    file(WRITE "${src}/${f}" "int main() { return 0; }\n")
  endforeach()
endforeach()
# find_package(coport REQUIRED): the targets come from add_subdirectory.
file(WRITE "${WORK_DIR}/config/coportConfig.cmake" "# targets added by the enclosing project\n")
file(WRITE "${src}/CMakeLists.txt" "
cmake_minimum_required(VERSION 3.25)
project(guide_fiberless_consumer LANGUAGES CXX)
add_subdirectory(\"${COPORT_SOURCE_DIR}\" coport)
include(\"${GUIDE_CMAKE}\")
")

execute_process(
  COMMAND ${CMAKE_COMMAND} -S "${src}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    -Dcoport_DIR=${WORK_DIR}/config
    -DCOPORT_WITH_FIBERS=OFF -DCOPORT_WITH_RABBIT=OFF
    -DCOPORT_BUILD_TESTS=OFF -DCOPORT_BUILD_EXAMPLES=OFF -DCOPORT_BUILD_BENCH=OFF
    -DCMAKE_DISABLE_FIND_PACKAGE_boost_fiber=ON -DCMAKE_DISABLE_FIND_PACKAGE_boost_context=ON
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the guide's ```cmake block does not configure against coport without fibers:\n${out}\n${err}")
endif()
message(STATUS "the guide's ```cmake block configures against coport without fibers")

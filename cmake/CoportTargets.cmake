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

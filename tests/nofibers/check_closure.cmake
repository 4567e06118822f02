# The proof that the fiberless build (COPORT_WITH_FIBERS=OFF) needs no
# Boost.Fiber or Boost.Context, from the tools' own records:
#  - every program's linker map (COPORT_LINK_MAPS) lists the files the linker
#    loaded: none may be libboost_fiber or libboost_context;
#  - Ninja's record of the headers each object included (`ninja -t deps`):
#    none may be under boost/fiber/ or boost/context/;
#  - the fiber-free bridge (coport::bridge, native_loop.cpp) is among them:
#    at least one program links it.
# And rabbitmq-c only where rabbit:// is: a program whose linker loaded
# librabbitmq must have linked coport::rabbit (libcoport_rabbit.a), every
# program that linked coport::rabbit must hold its driver object (the one
# that registers rabbit://), and programs on coport::messaging alone load
# neither. With RABBIT (COPORT_WITH_RABBIT), at least one program has the
# driver.
foreach(var BUILD_DIR NINJA MIN_PROGRAMS RABBIT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_closure.cmake: ${var} is not set")
  endif()
endforeach()

file(GLOB_RECURSE maps "${BUILD_DIR}/*.map")
list(LENGTH maps count)
if(count LESS MIN_PROGRAMS)
  message(FATAL_ERROR "found ${count} linker maps under ${BUILD_DIR}, expected at least ${MIN_PROGRAMS}")
endif()
set(programs "")
set(bridge_programs "")
set(rabbit_programs "")
set(rabbit_free_programs "")
foreach(map IN LISTS maps)
  file(STRINGS "${map}" loaded REGEX "^LOAD ")
  if(NOT loaded)
    message(FATAL_ERROR "${map} lists no loaded file: not a linker map?")
  endif()
  get_filename_component(name "${map}" NAME_WE)
  set(loads_rabbitmq FALSE)
  set(loads_coport_rabbit FALSE)
  set(loads_bridge FALSE)
  foreach(line IN LISTS loaded)
    if(line MATCHES "boost_fiber|boost_context")
      message(FATAL_ERROR "${map}: the linker loaded ${line}")
    elseif(line MATCHES "librabbitmq")
      set(loads_rabbitmq TRUE)
    elseif(line MATCHES "libcoport_rabbit[.]a")
      set(loads_coport_rabbit TRUE)
    elseif(line MATCHES "libcoport_bridge[.]a")
      set(loads_bridge TRUE)
    endif()
  endforeach()
  if(loads_coport_rabbit)
    # The archive members the linker took are listed with the archive's name.
    file(STRINGS "${map}" driver REGEX "libcoport_rabbit[.]a[(]rabbit_driver[.]cpp[.]o[)]" LIMIT_COUNT 1)
    if(NOT driver)
      message(FATAL_ERROR "${map}: ${name} links coport::rabbit but not its driver object: rabbit:// would be unknown")
    endif()
    list(APPEND rabbit_programs ${name})
  elseif(loads_rabbitmq)
    message(FATAL_ERROR "${map}: ${name} loads librabbitmq without linking coport::rabbit")
  else()
    list(APPEND rabbit_free_programs ${name})
  endif()
  list(APPEND programs ${name})
  if(loads_bridge)
    list(APPEND bridge_programs ${name})
  endif()
endforeach()
# The fiber-free bridge is one of the libraries checked: its programs are
# among those above.
if(NOT bridge_programs)
  message(FATAL_ERROR "no program links coport::bridge: the fiber-free bridge is not checked")
endif()
message(STATUS "programs on the fiber-free bridge: ${bridge_programs}")
message(STATUS "${count} programs link no Boost.Fiber or Boost.Context: ${programs}")
if(NOT rabbit_free_programs)
  message(FATAL_ERROR "every program loads rabbitmq-c: none shows that coport::messaging alone does not")
endif()
if(RABBIT AND NOT rabbit_programs)
  message(FATAL_ERROR "no program links coport::rabbit and its driver, though the tree builds it")
endif()
message(STATUS "rabbitmq-c and the rabbit driver only in: ${rabbit_programs}; in neither: ${rabbit_free_programs}")

execute_process(COMMAND "${NINJA}" -C "${BUILD_DIR}" -t deps
  RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ninja -t deps failed: ${err}")
endif()
string(REGEX MATCHALL "[^\n]*boost/(fiber|context)/[^\n]*" bad "${deps}")
if(bad)
  list(GET bad 0 first)
  message(FATAL_ERROR "an object includes a Boost.Fiber or Boost.Context header: ${first}")
endif()
string(REGEX MATCHALL "#deps [0-9]+" objects "${deps}")
list(LENGTH objects object_count)
if(object_count LESS 5)
  message(FATAL_ERROR "ninja records the headers of only ${object_count} objects: build first")
endif()
foreach(object IN ITEMS coro_executor.cpp.o native_loop.cpp.o)
  string(FIND "${deps}" "${object}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "ninja has no record of the object ${object}")
  endif()
endforeach()
message(STATUS "${object_count} objects include no Boost.Fiber or Boost.Context header")

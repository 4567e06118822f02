# Boost.Fiber and Boost.Context built inside the tree from their sources
# (COPORT_BOOST_FIBER_SOURCE: a Boost 1.81 source root holding
# libs/fiber/src and libs/context/src; scripts/boost-source.sh fetches
# Debian's), in place of Debian's shared libraries.
#
# What for: a sanitizer must see every fiber switch. Debian's libraries
# switch stacks with fcontext's assembly, without annotations. Built here,
# Boost.Context uses its ucontext implementation (BOOST_USE_UCONTEXT), which
# tells ThreadSanitizer (BOOST_USE_TSAN) and AddressSanitizer
# (BOOST_USE_ASAN) about each switch, and Boost.Fiber's own code is
# instrumented like the rest of the tree. The definitions change the layout
# of Boost.Context's types, so they are set for every object of the tree.
#
# Provides Boost::fiber and Boost::context as aliases of the two static
# libraries, so the rest of the tree links them as it links Debian's.

set(_src "${COPORT_BOOST_FIBER_SOURCE}/libs")
if(NOT EXISTS "${_src}/fiber/src/scheduler.cpp" OR NOT EXISTS "${_src}/context/src/fiber.cpp")
  message(FATAL_ERROR "COPORT_BOOST_FIBER_SOURCE=${COPORT_BOOST_FIBER_SOURCE}: no libs/fiber/src and "
    "libs/context/src there (scripts/boost-source.sh DIR fetches them)")
endif()

add_compile_definitions(BOOST_USE_UCONTEXT)
if(COPORT_SANITIZE MATCHES "thread")
  add_compile_definitions(BOOST_USE_TSAN)
endif()
if(COPORT_SANITIZE MATCHES "address")
  add_compile_definitions(BOOST_USE_ASAN)
endif()

add_library(coport_boost_context STATIC
  "${_src}/context/src/continuation.cpp"
  "${_src}/context/src/fiber.cpp"
  "${_src}/context/src/posix/stack_traits.cpp")
target_compile_definitions(coport_boost_context PRIVATE BOOST_CONTEXT_SOURCE)

add_library(coport_boost_fiber STATIC
  "${_src}/fiber/src/algo/algorithm.cpp"
  "${_src}/fiber/src/algo/round_robin.cpp"
  "${_src}/fiber/src/algo/shared_work.cpp"
  "${_src}/fiber/src/algo/work_stealing.cpp"
  "${_src}/fiber/src/barrier.cpp"
  "${_src}/fiber/src/condition_variable.cpp"
  "${_src}/fiber/src/context.cpp"
  "${_src}/fiber/src/fiber.cpp"
  "${_src}/fiber/src/future.cpp"
  "${_src}/fiber/src/mutex.cpp"
  "${_src}/fiber/src/properties.cpp"
  "${_src}/fiber/src/recursive_mutex.cpp"
  "${_src}/fiber/src/recursive_timed_mutex.cpp"
  "${_src}/fiber/src/scheduler.cpp"
  "${_src}/fiber/src/timed_mutex.cpp"
  "${_src}/fiber/src/waker.cpp")
target_compile_definitions(coport_boost_fiber PRIVATE BOOST_FIBERS_SOURCE)
target_link_libraries(coport_boost_fiber PUBLIC coport_boost_context)

foreach(_lib coport_boost_context coport_boost_fiber)
  target_link_libraries(${_lib} PUBLIC Boost::headers Threads::Threads)
  target_compile_features(${_lib} PUBLIC cxx_std_11)
  set_target_properties(${_lib} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  # In the bridge's export set only so that coport's own exported targets,
  # which link them, still generate; a tree built this way is for tests.
  install(TARGETS ${_lib} EXPORT coport_bridge_targets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
endforeach()
add_library(Boost::context ALIAS coport_boost_context)
add_library(Boost::fiber ALIAS coport_boost_fiber)

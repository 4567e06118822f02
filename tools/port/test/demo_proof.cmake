# coport-port-demo-proof: the coroutine forms coport-port writes for the
# demo's legacy code (legacy_storage::add and ::samples, the RPC methods'
# legacy forms of release 1), served under the demo's traffic with every
# read method in shadow and then every method ported (demo_proof.cpp).
#
# COPORT_PORT_DEMO_DIR: a directory holding the ported metering.cpp and
# metering.hpp, and copies of examples/demo's traffic.cpp, traffic.hpp,
# rest.cpp and rest.hpp, so that each of them includes the ported
# metering.hpp (traffic.cpp needs rest.cpp's HTTP client, which the proof
# does not use: it sends no REST queries).
if(NOT COPORT_PORT_DEMO_DIR)
  message(FATAL_ERROR "demo_proof.cmake needs COPORT_PORT_DEMO_DIR")
endif()
if(NOT TARGET coport_example_cli)
  include(${PROJECT_SOURCE_DIR}/examples/cli.cmake)  # CLI11, as coport-demo's command line
endif()

add_executable(coport-port-demo-proof
  ${COPORT_PORT_DEMO_DIR}/metering.cpp ${COPORT_PORT_DEMO_DIR}/traffic.cpp ${COPORT_PORT_DEMO_DIR}/rest.cpp
  ${CMAKE_CURRENT_LIST_DIR}/demo_proof.cpp)
target_include_directories(coport-port-demo-proof BEFORE PRIVATE ${COPORT_PORT_DEMO_DIR})
# What coport-demo links (examples/demo/CMakeLists.txt), but coport::rabbit:
# the proof runs over memory:// only.
target_link_libraries(coport-port-demo-proof PRIVATE coport::fiber_executor coport::coro_executor coport::bridge
  ${COPORT_SPDLOG} coport_example_cli)
if(TARGET coport::admin)
  target_link_libraries(coport-port-demo-proof PRIVATE coport::admin)
endif()
coport_warnings(coport-port-demo-proof)

if(COPORT_BUILD_TESTS)
  add_test(NAME port_demo_proof COMMAND coport-port-demo-proof)
  set_tests_properties(port_demo_proof PROPERTIES LABELS tidy TIMEOUT 300)
endif()

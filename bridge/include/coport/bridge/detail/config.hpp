#ifndef COPORT_BRIDGE_DETAIL_CONFIG_HPP
#define COPORT_BRIDGE_DETAIL_CONFIG_HPP

// Whether this coport::bridge has its fiber side. The coport::bridge target
// defines COPORT_BRIDGE_FIBERS for everything that links it: 1 when coport
// was built with COPORT_WITH_FIBERS=ON, 0 for the fiber-free bridge, which
// keeps the coroutine side (runtime, executors, work tags, spawn, mutex,
// event, channel, diagnostics) with the same names and signatures, and
// leaves the fiber-only calls out: code that still uses one does not
// compile, and the compiler's message names the call (removed.hpp).

#ifndef COPORT_BRIDGE_FIBERS
#error "COPORT_BRIDGE_FIBERS is not defined: link the coport::bridge target (find_package(coport COMPONENTS bridge)), which defines it"
#endif

namespace coport::bridge::detail {

/// False for every type: a static_assert on it fails only when the
/// template that holds it is used.
template <class...>
inline constexpr bool fiber_side_removed = false;

}  // namespace coport::bridge::detail

/// The message of a fiber-only call used in a fiber-free build: `call`
/// names it, `instead` says what ported code uses.
#define COPORT_BRIDGE_REMOVED(call, instead)                                                        \
  "coport::bridge::" call " belongs to the fiber side of the bridge, which this coport does not " \
  "have (built with COPORT_WITH_FIBERS=OFF): " instead

#endif

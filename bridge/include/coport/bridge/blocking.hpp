#ifndef COPORT_BRIDGE_BLOCKING_HPP
#define COPORT_BRIDGE_BLOCKING_HPP

// Markers that say who may block a fiber, read by the coport-* clang-tidy
// checks and the inventory (tools/tidy, tools/inventory). They change
// nothing in the program: under clang they are annotations, under other
// compilers nothing.
//
//   COPORT_FIBER_BLOCKING void flush_to_disk();      // blocks the calling fiber
//   COPORT_FIBER_BLOCKING_INSTEAD("co_await flush_async()") void flush();
//
// A coroutine that reaches a marked function, directly or through other
// functions, is reported with the call chain; so is an Asio handler, which
// runs on the loop. coport marks its own fiber-blocking calls the same way
// (bridge::await, mutex::lock, event::wait, channel::push/pop, ...).

#if defined(__clang__)
/// The function blocks the calling fiber.
#define COPORT_FIBER_BLOCKING [[clang::annotate("coport::fiber_blocking")]]
/// The function blocks the calling fiber; `instead` (a string literal) says
/// what ported code uses in its place.
#define COPORT_FIBER_BLOCKING_INSTEAD(instead) [[clang::annotate("coport::fiber_blocking", instead)]]
/// On a class: an Asio completion token whose operations block the calling
/// fiber (bridge::use_fiber_t).
#define COPORT_FIBER_BLOCKING_TOKEN [[clang::annotate("coport::fiber_blocking_token")]]
/// A call between the two worlds: "await", "run_in_fiber", "use_fiber" or
/// "hosted" (the cross-world calls of the migration report).
#define COPORT_CROSS_WORLD(kind) [[clang::annotate("coport::cross_world", kind)]]
#else
#define COPORT_FIBER_BLOCKING
#define COPORT_FIBER_BLOCKING_INSTEAD(instead)
#define COPORT_FIBER_BLOCKING_TOKEN
#define COPORT_CROSS_WORLD(kind)
#endif

#endif

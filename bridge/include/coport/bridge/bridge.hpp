#ifndef COPORT_BRIDGE_BRIDGE_HPP
#define COPORT_BRIDGE_BRIDGE_HPP

/// Everything of coport::bridge: one Asio loop that runs Boost.Fiber fibers
/// and C++20 coroutines side by side.

#include <coport/bridge/await.hpp>
#include <coport/bridge/channel.hpp>
#include <coport/bridge/diagnostics.hpp>
#include <coport/bridge/error.hpp>
#include <coport/bridge/event.hpp>
#include <coport/bridge/fiber.hpp>
#include <coport/bridge/hosted.hpp>
#include <coport/bridge/loop_executor.hpp>
#include <coport/bridge/mutex.hpp>
#include <coport/bridge/report.hpp>
#include <coport/bridge/runtime.hpp>
#include <coport/bridge/spawn.hpp>
#include <coport/bridge/status_channel.hpp>
#include <coport/bridge/use_fiber.hpp>

#endif

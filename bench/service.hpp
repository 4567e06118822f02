#ifndef COPORT_BENCH_SERVICE_HPP
#define COPORT_BENCH_SERVICE_HPP

// The messaging service that coport-bench's executor figures (executors.cpp)
// and admin server figures (admin.cpp) both call: its methods, and n
// sequential calls of one from a coroutine client, timed.

#include "bench.hpp"

#include <coport/messaging/rpc/client.hpp>
#include <coport/messaging/serving/executor.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>

namespace coport_bench {

namespace msg = coport::messaging;

/// The benchmark service: the same `add` as messaging.call_memory in every
/// form and mode, and `work`, a fiber method of a few microseconds of CPU.
msg::service bench_service(const std::string& topic, bool fiber_methods = true);

/// n sequential calls of `method` from a coroutine client, timed on the
/// client's thread.
boost::asio::awaitable<elapsed_time> sequential_calls(msg::rpc_client client, std::string method, std::uint64_t n);

}  // namespace coport_bench

#endif

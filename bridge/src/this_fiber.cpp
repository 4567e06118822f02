#include "loop.hpp"

#include <coport/bridge/fiber.hpp>

#include <boost/asio/error.hpp>

namespace coport::bridge::this_fiber {

std::stop_token stop_token() noexcept { return detail::current_stop_token(); }

bool stop_requested() noexcept { return detail::current_stop_token().stop_requested(); }

void interruption_point() {
  if (stop_requested()) {
    throw boost::system::system_error(boost::asio::error::operation_aborted,
                                      "fiber interrupted: stop requested");
  }
}

void sleep_until(std::chrono::steady_clock::time_point deadline) {
  detail::check_can_block("this_fiber::sleep_until");
  interruption_point();
  detail::parker p;
  {
    std::stop_callback wake(detail::current_stop_token(), [&p] { p.unpark(); });
    p.park_until(deadline);
  }
  interruption_point();
}

std::string_view work_name() noexcept {
  const work_tag* t = detail::current_tag();
  return t ? std::string_view(t->name) : std::string_view();
}

}  // namespace coport::bridge::this_fiber

#include "loop.hpp"

#include <coport/bridge/fiber.hpp>

#include <boost/asio/error.hpp>

#include <utility>

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

work_scope::work_scope(std::string_view name) {
  detail::loop* l = detail::tl_loop;
  if (!l) return;
  boost::fibers::context* ctx = detail::tl_running;
  if (!ctx->is_context(boost::fibers::type::worker_context)) return;
  detail::fiber_info* info = detail::info_of(ctx);
  // A hosted coroutine's steps interleave with others' in the same host
  // fiber across its co_awaits: a scope there would name work not its own.
  if (!info || info->hosting) return;
  const work_tag* t = l->registry->tag(name);
  t->calls.fetch_add(1, std::memory_order_relaxed);
  previous_ = std::exchange(info->tag, t);
  fiber_ = info;
  l->algo_->rename_running(t);
}

work_scope::~work_scope() {
  if (!fiber_) return;
  auto* info = static_cast<detail::fiber_info*>(fiber_);
  info->tag = previous_;
  detail::loop* l = detail::tl_loop;
  l->algo_->rename_running(previous_ ? previous_ : l->tag_fiber);
}

std::string_view work_name() noexcept {
  const work_tag* t = detail::current_tag();
  return t ? std::string_view(t->name) : std::string_view();
}

}  // namespace coport::bridge::this_fiber

#ifndef COPORT_BRIDGE_LOOP_EXECUTOR_HPP
#define COPORT_BRIDGE_LOOP_EXECUTOR_HPP

#include <coport/bridge/detail/loop_api.hpp>

#include <boost/asio/execution.hpp>
#include <boost/asio/io_context.hpp>

#include <utility>

namespace coport::bridge {

/// The executor of a coport loop: work submitted through it runs as *native*
/// code on the loop fiber (the fast path for ported coroutines). It is an
/// Asio standard executor, so it converts to `asio::any_io_executor`, works
/// with `co_spawn`, strands and I/O objects (whose services live in the
/// loop's io_context).
///
/// Work submitted from the loop's own thread is queued without locks or
/// system calls; from other threads it is handed over through the
/// io_context. An executor may carry a work tag: the name under which stalls
/// and loop blocks of the work it runs are counted.
class loop_executor {
 public:
  loop_executor(detail::loop* l, const work_tag* tag) noexcept : loop_(l), tag_(tag) {}

  /// The io_context whose services I/O objects on this executor use.
  boost::asio::io_context& query(boost::asio::execution::context_t) const noexcept {
    return detail::io_of(loop_);
  }
  static constexpr boost::asio::execution::mapping_t query(
      boost::asio::execution::mapping_t) noexcept {
    return boost::asio::execution::mapping.thread;
  }
  constexpr boost::asio::execution::blocking_t query(
      boost::asio::execution::blocking_t) const noexcept {
    return never_ ? boost::asio::execution::blocking_t(boost::asio::execution::blocking.never)
                  : boost::asio::execution::blocking_t(boost::asio::execution::blocking.possibly);
  }
  static constexpr boost::asio::execution::outstanding_work_t query(
      boost::asio::execution::outstanding_work_t) noexcept {
    // The loop runs until stopped, whatever work is outstanding.
    return boost::asio::execution::outstanding_work.untracked;
  }
  static constexpr boost::asio::execution::relationship_t query(
      boost::asio::execution::relationship_t) noexcept {
    return boost::asio::execution::relationship.fork;
  }

  /// Never run submitted work inline (post semantics).
  loop_executor require(boost::asio::execution::blocking_t::never_t) const noexcept {
    loop_executor e = *this;
    e.never_ = true;
    return e;
  }
  /// Run submitted work inline when already on the loop fiber (dispatch).
  loop_executor require(boost::asio::execution::blocking_t::possibly_t) const noexcept {
    loop_executor e = *this;
    e.never_ = false;
    return e;
  }
  loop_executor require(boost::asio::execution::relationship_t::fork_t) const noexcept {
    return *this;
  }
  loop_executor require(
      boost::asio::execution::relationship_t::continuation_t) const noexcept {
    return *this;
  }

  /// Runs `f` on the loop fiber.
  template <class F>
  void execute(F&& f) const {
    if (!never_ && detail::in_loop_fiber(loop_)) {
      std::forward<F>(f)();
      return;
    }
    detail::submit(loop_, detail::make_task(std::forward<F>(f), tag_));
  }

  /// True while the caller runs natively on this executor's loop fiber.
  bool running_in_this_thread() const noexcept { return detail::in_loop_fiber(loop_); }

  /// The same executor with another work tag.
  loop_executor with_tag(const work_tag* tag) const noexcept {
    loop_executor e = *this;
    e.tag_ = tag;
    return e;
  }
  const work_tag* tag() const noexcept { return tag_; }
  detail::loop* get_loop() const noexcept { return loop_; }

  friend bool operator==(const loop_executor& a, const loop_executor& b) noexcept {
    return a.loop_ == b.loop_ && a.tag_ == b.tag_;
  }
  friend bool operator!=(const loop_executor& a, const loop_executor& b) noexcept {
    return !(a == b);
  }

 private:
  detail::loop* loop_;
  const work_tag* tag_;
  bool never_ = false;
};

static_assert(boost::asio::execution::is_executor<loop_executor>::value);

}  // namespace coport::bridge

#endif

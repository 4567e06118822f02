#include "loop.hpp"

namespace coport::bridge {

runtime::runtime(runtime_options options) : loop_(std::make_unique<detail::loop>(std::move(options))) {
  loop_->owner = this;
}

runtime::runtime(std::shared_ptr<boost::asio::io_context> io, runtime_options options)
    : loop_(std::make_unique<detail::loop>(std::move(io), std::move(options))) {
  loop_->owner = this;
}

void runtime::run() { loop_->run_here(); }

runtime::~runtime() {
  stop();
  join();
}

loop_executor runtime::get_executor() const noexcept { return loop_executor(loop_.get(), nullptr); }

loop_executor runtime::get_executor(std::string_view work_name) const {
  return loop_executor(loop_.get(), loop_->registry->tag(work_name));
}

boost::asio::io_context& runtime::io_context() noexcept { return loop_->io; }

void runtime::stop() { loop_->request_stop(); }

void runtime::join() { loop_->join(); }

bool runtime::stopping() const noexcept { return loop_->stop_requested(); }

diagnostics& runtime::registry() noexcept { return *loop_->registry; }

const runtime_options& runtime::options() const noexcept { return loop_->opts; }

std::thread::id runtime::thread_id() const noexcept { return loop_->thread_id; }

std::size_t runtime::tracked_work() const noexcept {
  return loop_->tracked_count.load(std::memory_order_relaxed);
}

loop_stats runtime::stats() const noexcept { return loop_->stats(); }

runtime& runtime::of(const loop_executor& ex) noexcept { return *ex.get_loop()->owner; }

runtime_pool::runtime_pool(std::size_t threads, runtime_options options)
    : registry_(options.registry ? options.registry : std::make_shared<diagnostics>()) {
  if (threads == 0) threads = 1;
  loops_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    runtime_options o = options;
    o.name = options.name + "-" + std::to_string(i);
    o.registry = registry_;
    loops_.push_back(std::make_unique<runtime>(std::move(o)));
  }
}

runtime_pool::~runtime_pool() {
  stop();
  join();
}

runtime& runtime_pool::next() noexcept {
  return *loops_[next_.fetch_add(1, std::memory_order_relaxed) % loops_.size()];
}

void runtime_pool::stop() {
  for (auto& l : loops_) l->stop();
}

void runtime_pool::join() {
  for (auto& l : loops_) l->join();
}

}  // namespace coport::bridge

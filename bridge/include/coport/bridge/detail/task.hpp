#ifndef COPORT_BRIDGE_DETAIL_TASK_HPP
#define COPORT_BRIDGE_DETAIL_TASK_HPP

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace coport::bridge {
struct work_tag;
}

namespace coport::bridge::detail {

// Small blocks for type-erased tasks come from a per-thread cache: Asio posts
// a handler for nearly every step of a coroutine, and going to the global
// allocator for each costs more than running the step.
void* allocate_task_block(std::size_t size);
void deallocate_task_block(void* p, std::size_t size) noexcept;

/// A queued unit of work: an intrusive node with a type-erased callable.
struct task {
  task* next = nullptr;
  const work_tag* tag = nullptr;
  /// Runs (run == true) or only destroys (run == false) the task; frees it
  /// in both cases.
  void (*complete)(task*, bool run) = nullptr;

  void run() { complete(this, true); }
  void discard() noexcept { complete(this, false); }
};

template <class F>
struct task_impl final : task {
  F fn;

  explicit task_impl(F&& f) : fn(std::move(f)) { complete = &do_complete; }

  static void do_complete(task* base, bool run) {
    auto* self = static_cast<task_impl*>(base);
    // Move the function out and free the node before the call, so that work
    // the call posts can reuse the block (the same rule Asio's handlers follow).
    F local(std::move(self->fn));
    self->~task_impl();
    deallocate_task_block(self, sizeof(task_impl));
    if (run) local();
  }
};

template <class F>
task* make_task(F&& f, const work_tag* tag) {
  using impl = task_impl<std::decay_t<F>>;
  void* mem = allocate_task_block(sizeof(impl));
  auto* t = ::new (mem) impl(std::decay_t<F>(std::forward<F>(f)));
  t->tag = tag;
  return t;
}

/// FIFO of tasks; not thread-safe (owned by one loop thread).
class task_queue {
 public:
  task_queue() = default;
  task_queue(const task_queue&) = delete;
  task_queue& operator=(const task_queue&) = delete;
  ~task_queue() { clear(); }

  bool empty() const noexcept { return head_ == nullptr; }

  void push(task* t) noexcept {
    t->next = nullptr;
    if (tail_) tail_->next = t; else head_ = t;
    tail_ = t;
  }

  task* pop() noexcept {
    task* t = head_;
    if (t) {
      head_ = t->next;
      if (!head_) tail_ = nullptr;
    }
    return t;
  }

  /// Moves every queued task into `other` (which must be empty).
  void move_to(task_queue& other) noexcept {
    other.head_ = std::exchange(head_, nullptr);
    other.tail_ = std::exchange(tail_, nullptr);
  }

  void clear() noexcept {
    while (task* t = pop()) t->discard();
  }

 private:
  task* head_ = nullptr;
  task* tail_ = nullptr;
};

}  // namespace coport::bridge::detail

#endif

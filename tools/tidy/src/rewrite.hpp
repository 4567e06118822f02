// The coroutine form of a fiber-blocking call, where it is certain: shared
// by the checks' fix-its (checks.cpp) and coport-port (port.cpp).
//
//   op(..., bridge::use_fiber)            co_await op(..., boost::asio::use_awaitable)
//   op(..., bridge::use_fiber[ec])        co_await op(..., boost::asio::redirect_error(boost::asio::use_awaitable, ec))
//   (Boost.Fiber's example yield, yield[ec]: the same)
//   std::lock_guard<bridge::mutex> lk(m)  auto lk = co_await m.scoped_lock()   (unique_lock, scoped_lock too)
//   ev.wait()                             co_await ev.async_wait(boost::asio::use_awaitable)
//   ch.push(v) / ch.pop()                 co_await ch.async_push(v, ...) / co_await ch.async_pop(...)
//   this_fiber::sleep_for(d)              co_await a steady_timer's wait (bridge's and Boost.Fiber's)
//   boost::this_fiber::yield()            co_await boost::asio::post(executor, use_awaitable)
//   bridge::await(aw)                     co_await aw
//
// Everything else (a stock Boost.Fiber primitive, a call into unported
// code) has no certain rewrite: the diagnostics say what to do instead.
#ifndef COPORT_TIDY_REWRITE_HPP
#define COPORT_TIDY_REWRITE_HPP

#include "analysis.hpp"

#include <clang/Basic/SourceLocation.h>

#include <optional>
#include <string>
#include <vector>

namespace coport::tidy {

/// `e` without the parentheses, implicit casts, temporaries and converting
/// or copying constructions around what is written: the string literal in
/// a `std::string` argument, the token object in a copied token.
const clang::Expr* bare(const clang::Expr* e);

/// Replaces `range` (a character range in one file) with `text`; an empty
/// range inserts.
struct edit {
  clang::CharSourceRange range;
  std::string text;
};

/// A rewrite of one call: its edits, and the source it covers (for
/// overlaps between rewrites).
struct rewrite {
  std::vector<edit> edits;
  clang::SourceRange covers;
};

class rewriter {
 public:
  explicit rewriter(clang::ASTContext& ctx) : ctx_(ctx) {}

  /// The certain rewrite of call `c`, written in a coroutine (or in a
  /// function becoming one), if there is one.
  std::optional<rewrite> certain(const call_site& c) const;

  /// `co_await ` before `e` (in parentheses where what follows `e` would
  /// otherwise bind to it).
  std::vector<edit> await_edits(const clang::Expr* e) const;

  /// The source text of a token range; empty when it is in a macro.
  std::string text(clang::SourceRange r) const;
  /// Whether `r` is written in one file, outside macros.
  bool plain(clang::SourceRange r) const;
  /// The character range of the token range `r`.
  clang::CharSourceRange chars(clang::SourceRange r) const;

 private:
  std::optional<rewrite> token_rewrite(const call_site& c) const;
  std::optional<rewrite> lock_rewrite(const call_site& c) const;
  std::optional<rewrite> marked_rewrite(const call_site& c) const;
  /// The object a member call is made on, as written with its `.` or
  /// `->` ("ev.", "p->"), or "" for an implicit `this`.
  std::optional<std::string> object_prefix(const clang::CallExpr* call) const;

  clang::ASTContext& ctx_;
};

}  // namespace coport::tidy

#endif

#include "rewrite.hpp"

#include <clang/AST/ASTContext.h>
#include <clang/AST/DeclCXX.h>
#include <clang/AST/ExprCXX.h>
#include <clang/AST/ParentMapContext.h>
#include <clang/AST/TemplateBase.h>
#include <clang/Basic/SourceManager.h>
#include <clang/Lex/Lexer.h>

#include <algorithm>

namespace coport::tidy {

using namespace clang;

namespace {

constexpr const char* use_awaitable = "boost::asio::use_awaitable";
constexpr const char* this_executor = "co_await boost::asio::this_coro::executor";

// The qualified name of the class a type (or a reference to it) names.
std::string record_name(QualType t) {
  const CXXRecordDecl* r = t.getNonReferenceType()->getAsCXXRecordDecl();
  return r ? analysis::plain_name(r) : std::string();
}

bool is_fiber_token(QualType t) {
  const std::string n = record_name(t);
  return n == "coport::bridge::use_fiber_t" || n == "boost::fibers::asio::yield_t";
}

// The token objects themselves (not a copy held in a variable, whose
// error code is not visible here).
bool is_token_object(const Expr* e) {
  const auto* d = dyn_cast<DeclRefExpr>(e->IgnoreParenImpCasts());
  const auto* v = d ? dyn_cast<VarDecl>(d->getDecl()) : nullptr;
  if (!v || v->hasLocalStorage()) return false;
  const std::string n = analysis::plain_name(v);
  return n == "coport::bridge::use_fiber" || n == "boost::fibers::asio::yield";
}

}  // namespace

const Expr* bare(const Expr* e) {
  while (true) {
    e = e->IgnoreParenImpCasts();
    if (auto* m = dyn_cast<MaterializeTemporaryExpr>(e)) e = m->getSubExpr();
    else if (auto* b = dyn_cast<CXXBindTemporaryExpr>(e)) e = b->getSubExpr();
    else if (auto* w = dyn_cast<ExprWithCleanups>(e)) e = w->getSubExpr();
    else if (auto* c = dyn_cast<CXXConstructExpr>(e);
             c && c->getNumArgs() >= 1 && !isa<CXXTemporaryObjectExpr>(c) &&
             std::all_of(c->arg_begin() + 1, c->arg_end(), [](const Expr* a) { return isa<CXXDefaultArgExpr>(a); }))
      e = c->getArg(0);
    else return e;
  }
}

bool rewriter::plain(SourceRange r) const {
  const SourceManager& sm = ctx_.getSourceManager();
  if (r.isInvalid() || r.getBegin().isMacroID() || r.getEnd().isMacroID()) return false;
  return sm.getFileID(r.getBegin()) == sm.getFileID(r.getEnd());
}

CharSourceRange rewriter::chars(SourceRange r) const { return CharSourceRange::getTokenRange(r); }

std::string rewriter::text(SourceRange r) const {
  if (!plain(r)) return {};
  return Lexer::getSourceText(chars(r), ctx_.getSourceManager(), ctx_.getLangOpts()).str();
}

std::vector<edit> rewriter::await_edits(const Expr* e) const {
  // What follows a postfix expression binds tighter than co_await: the
  // object of a member access, a subscript or a call needs parentheses.
  bool parens = false;
  const Expr* child = e;
  for (DynTypedNodeList parents = ctx_.getParents(*e); !parents.empty(); parents = ctx_.getParents(parents[0])) {
    const Expr* p = parents[0].get<Expr>();
    if (!p) break;
    if (isa<ImplicitCastExpr>(p) || isa<MaterializeTemporaryExpr>(p) || isa<CXXBindTemporaryExpr>(p) ||
        isa<ExprWithCleanups>(p) || isa<ParenExpr>(p)) {
      if (isa<ParenExpr>(p)) break;
      child = p;
      continue;
    }
    if (auto* m = dyn_cast<MemberExpr>(p)) parens = m->getBase() == child;
    else if (auto* s = dyn_cast<ArraySubscriptExpr>(p)) parens = s->getBase() == child;
    else if (auto* c = dyn_cast<CallExpr>(p)) parens = c->getCallee() == child;
    else if (auto* u = dyn_cast<UnaryOperator>(p)) parens = u->isPostfix();
    break;
  }
  std::vector<edit> out;
  out.push_back({CharSourceRange::getCharRange(e->getBeginLoc(), e->getBeginLoc()), parens ? "(co_await " : "co_await "});
  if (parens)
    out.push_back({CharSourceRange::getCharRange(
                       Lexer::getLocForEndOfToken(e->getEndLoc(), 0, ctx_.getSourceManager(), ctx_.getLangOpts()),
                       Lexer::getLocForEndOfToken(e->getEndLoc(), 0, ctx_.getSourceManager(), ctx_.getLangOpts())),
                   ")"});
  return out;
}

std::optional<std::string> rewriter::object_prefix(const CallExpr* call) const {
  const auto* m = dyn_cast<CXXMemberCallExpr>(call);
  if (!m) return std::nullopt;
  const auto* me = dyn_cast<MemberExpr>(m->getCallee()->IgnoreParenImpCasts());
  if (!me) return std::nullopt;
  if (me->isImplicitAccess()) return std::string();
  const std::string base = text(me->getBase()->getSourceRange());
  if (base.empty()) return std::nullopt;
  return base + (me->isArrow() ? "->" : ".");
}

std::optional<rewrite> rewriter::certain(const call_site& c) const {
  if (!c.callee || !c.expr || !plain(c.expr->getSourceRange())) return std::nullopt;
  if (auto r = token_rewrite(c)) return r;
  if (auto r = lock_rewrite(c)) return r;
  return marked_rewrite(c);
}

// op(..., use_fiber) and op(..., use_fiber[ec]); Boost.Fiber's yield alike.
std::optional<rewrite> rewriter::token_rewrite(const call_site& c) const {
  const auto* call = dyn_cast<CallExpr>(c.expr);
  if (!call || isa<CXXOperatorCallExpr>(call)) return std::nullopt;
  const Expr* token = nullptr;
  for (const Expr* a : call->arguments())
    if (is_fiber_token(a->getType())) token = a;
  if (!token) return std::nullopt;
  if (auto* parent = dyn_cast<CXXRecordDecl>(c.callee->getDeclContext()); parent && is_fiber_token(ctx_.getRecordType(parent)))
    return std::nullopt;  // the token's own members
  const Expr* t = bare(token);
  std::string replacement;
  if (auto* op = dyn_cast<CXXOperatorCallExpr>(t); op && op->getOperator() == OO_Subscript && op->getNumArgs() == 2) {
    if (!is_token_object(bare(op->getArg(0)))) return std::nullopt;
    const std::string ec = text(op->getArg(1)->getSourceRange());
    if (ec.empty()) return std::nullopt;
    replacement = std::string("boost::asio::redirect_error(") + use_awaitable + ", " + ec + ")";
  } else if (is_token_object(t)) {
    replacement = use_awaitable;
  } else {
    return std::nullopt;  // a token held elsewhere: not certain
  }
  if (!plain(token->getSourceRange())) return std::nullopt;
  rewrite r;
  r.edits = await_edits(call);
  r.edits.push_back({chars(token->getSourceRange()), replacement});
  r.covers = call->getSourceRange();
  return r;
}

// std::lock_guard / unique_lock / scoped_lock of a bridge::mutex, as a
// local: `auto lk = co_await m.scoped_lock()`.
std::optional<rewrite> rewriter::lock_rewrite(const call_site& c) const {
  const auto* construct = dyn_cast<CXXConstructExpr>(c.expr);
  if (!construct || construct->getNumArgs() != 1) return std::nullopt;
  const auto* spec = dyn_cast<ClassTemplateSpecializationDecl>(construct->getConstructor()->getParent());
  if (!spec) return std::nullopt;
  const std::string guard = analysis::plain_name(spec);
  if (guard != "std::lock_guard" && guard != "std::unique_lock" && guard != "std::scoped_lock") return std::nullopt;
  const TemplateArgumentList& args = spec->getTemplateArgs();
  if (args.size() != 1) return std::nullopt;
  QualType mutex_type;
  if (args[0].getKind() == TemplateArgument::Type) mutex_type = args[0].getAsType();
  else if (args[0].getKind() == TemplateArgument::Pack && args[0].pack_size() == 1)
    mutex_type = args[0].pack_begin()->getAsType();
  if (mutex_type.isNull() || record_name(mutex_type) != "coport::bridge::mutex") return std::nullopt;

  const VarDecl* var = nullptr;
  const Expr* child = construct;
  for (DynTypedNodeList parents = ctx_.getParents(*construct); !parents.empty();
       parents = ctx_.getParents(parents[0])) {
    if ((var = parents[0].get<VarDecl>())) break;
    const Expr* p = parents[0].get<Expr>();
    if (!p || !(isa<ExprWithCleanups>(p) || isa<ImplicitCastExpr>(p))) return std::nullopt;
    child = p;
  }
  if (!var || !var->hasLocalStorage() || var->getInit() != child) return std::nullopt;
  const DynTypedNodeList decl_parents = ctx_.getParents(*var);
  const auto* stmt = decl_parents.empty() ? nullptr : decl_parents[0].get<DeclStmt>();
  if (!stmt || !stmt->isSingleDecl() || !plain(var->getSourceRange())) return std::nullopt;

  const Expr* m = construct->getArg(0);
  std::string object = text(m->getSourceRange());
  if (object.empty()) return std::nullopt;
  const Expr* bare = m->IgnoreParenImpCasts();
  if (!isa<DeclRefExpr>(bare) && !isa<MemberExpr>(bare)) object = "(" + object + ")";
  rewrite r;
  r.edits.push_back({chars(var->getSourceRange()), std::string(var->getType().isConstQualified() ? "const " : "") +
                                                       "auto " + var->getNameAsString() + " = co_await " + object +
                                                       ".scoped_lock()"});
  r.covers = var->getSourceRange();
  return r;
}

// coport's marked calls and Boost.Fiber's sleeps and yield. The edits
// leave the arguments as written, so that a rewrite inside one of them
// (a call of a ported function, say) composes with this one.
std::optional<rewrite> rewriter::marked_rewrite(const call_site& c) const {
  const auto* call = dyn_cast<CallExpr>(c.expr);
  if (!call) return std::nullopt;
  const SourceManager& sm = ctx_.getSourceManager();
  const LangOptions& lo = ctx_.getLangOpts();
  const std::string name = analysis::plain_name(c.callee);
  const unsigned n = call->getNumArgs();
  auto after = [&](SourceLocation loc) { return Lexer::getLocForEndOfToken(loc, 0, sm, lo); };
  const std::vector<edit> wrap = await_edits(call);
  const bool parens = wrap.size() == 2;
  const std::string open = parens ? "(co_await " : "co_await ";
  const std::string close = parens ? ")" : "";
  // Everything before argument 0, and everything after it.
  auto around_arg = [&](const std::string& before, const std::string& behind) -> std::optional<rewrite> {
    const Expr* a = call->getArg(0);
    if (!plain(a->getSourceRange())) return std::nullopt;
    rewrite r;
    r.edits.push_back({CharSourceRange::getCharRange(call->getBeginLoc(), a->getBeginLoc()), before});
    r.edits.push_back({CharSourceRange::getCharRange(after(a->getEndLoc()), after(call->getRParenLoc())), behind});
    r.covers = call->getSourceRange();
    return r;
  };
  if (name == "coport::bridge::await" && n == 1) {
    if (call->getArg(0)->IgnoreParenImpCasts()->isLValue()) return around_arg(open + "std::move(", ")" + close);
    return around_arg(open, close);
  }
  if ((name == "coport::bridge::this_fiber::sleep_for" || name == "boost::this_fiber::sleep_for" ||
       name == "coport::bridge::this_fiber::sleep_until") &&
      n == 1)
    return around_arg(open + "boost::asio::steady_timer(" + this_executor + ", ",
                      std::string(").async_wait(") + use_awaitable + ")" + close);
  if (name == "boost::this_fiber::yield" && n == 0) {
    rewrite r;
    r.edits.push_back({chars(call->getSourceRange()), open + "boost::asio::post(" + this_executor + ", " +
                                                         use_awaitable + ")" + close});
    r.covers = call->getSourceRange();
    return r;
  }
  // Member calls: the member's name changes and the token is added.
  const auto* m = dyn_cast<CXXMemberCallExpr>(call);
  const auto* me = m ? dyn_cast<MemberExpr>(m->getCallee()->IgnoreParenImpCasts()) : nullptr;
  if (!me || me->getMemberLoc().isMacroID() || !object_prefix(call)) return std::nullopt;
  std::string member, token;
  if (name == "coport::bridge::event::wait" && n == 0) member = "async_wait", token = use_awaitable;
  else if (name == "coport::bridge::channel::push" && n == 1) member = "async_push", token = std::string(", ") + use_awaitable;
  else if (name == "coport::bridge::channel::pop" && n == 0) member = "async_pop", token = use_awaitable;
  else if (name == "coport::migration::point::call") member = "async_call";
  else return std::nullopt;
  rewrite r;
  r.edits = wrap;
  r.edits.push_back({CharSourceRange::getTokenRange(me->getMemberLoc(), me->getMemberLoc()), member});
  if (!token.empty())
    r.edits.push_back({CharSourceRange::getCharRange(call->getRParenLoc(), call->getRParenLoc()), token});
  r.covers = call->getSourceRange();
  return r;
}

}  // namespace coport::tidy

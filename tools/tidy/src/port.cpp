#include "port.hpp"

#include "rewrite.hpp"

#include <clang/AST/ASTContext.h>
#include <clang/AST/DeclCXX.h>
#include <clang/AST/ExprCXX.h>
#include <clang/AST/ParentMapContext.h>
#include <clang/AST/RecursiveASTVisitor.h>
#include <clang/AST/StmtCXX.h>
#include <clang/ASTMatchers/ASTMatchers.h>
#include <clang/Basic/SourceManager.h>
#include <clang/Lex/Lexer.h>

#include <algorithm>
#include <set>

namespace coport::tidy {

using namespace clang;
using namespace clang::ast_matchers;

namespace {


bool ends_with_name(const std::string& qualified, const std::string& wanted) {
  if (qualified == wanted) return true;
  return qualified.size() > wanted.size() + 2 &&
         qualified.compare(qualified.size() - wanted.size(), wanted.size(), wanted) == 0 &&
         qualified.compare(qualified.size() - wanted.size() - 2, 2, "::") == 0;
}

std::string last_part(const std::string& qualified) {
  const auto at = qualified.rfind("::");
  return at == std::string::npos ? qualified : qualified.substr(at + 2);
}

// The name of a function's coroutine form: `incr_fiber` -> `incr_coroutine`,
// `add` -> `add_coroutine`.
std::string coroutine_name(const std::string& legacy) {
  std::string base = legacy;
  for (const char* suffix : {"_fiber", "_legacy"}) {
    const std::string s = suffix;
    if (base.size() > s.size() && base.compare(base.size() - s.size(), s.size(), s) == 0) {
      base.resize(base.size() - s.size());
      break;
    }
  }
  return base + "_coroutine";
}


// The return statements of one body: not those of lambdas or local
// classes defined in it.
class returns : public RecursiveASTVisitor<returns> {
 public:
  std::vector<const ReturnStmt*> found;
  bool TraverseLambdaExpr(LambdaExpr*) { return true; }
  bool TraverseCXXRecordDecl(CXXRecordDecl*) { return true; }
  bool VisitReturnStmt(ReturnStmt* r) {
    found.push_back(r);
    return true;
  }
};

// Whether a coroutine form takes a parameter of type `t` by value where
// the legacy form takes it by reference to const (or by rvalue
// reference): a coroutine's frame keeps its parameters, and a reference
// there outlives many a caller's temporary. Not for types that cannot be
// copied.
bool taken_by_value(QualType t) {
  if (!t->isRValueReferenceType() && !(t->isLValueReferenceType() && t.getNonReferenceType().isConstQualified()))
    return false;
  const QualType v = t.getNonReferenceType();
  if (v->isFunctionType() || v->isArrayType()) return false;
  const CXXRecordDecl* r = v->getAsCXXRecordDecl();
  if (!r) return true;
  r = r->getDefinition();
  if (!r) return false;
  if (t->isRValueReferenceType()) {
    if (r->needsImplicitMoveConstructor()) return !r->defaultedMoveConstructorIsDeleted();
    for (const CXXConstructorDecl* c : r->ctors())
      if (c->isMoveConstructor() && !c->isDeleted() && c->getAccess() != AS_private) return true;
    return false;
  }
  if (r->needsImplicitCopyConstructor()) return !r->defaultedCopyConstructorIsDeleted();
  for (const CXXConstructorDecl* c : r->ctors())
    if (c->isCopyConstructor() && !c->isDeleted() && c->getAccess() == AS_public) return true;
  return false;
}

// What a point's forms are given as written: its `.legacy = ...` and its
// `.ported = ...`, if any.
std::pair<const DesignatedInitExpr*, const DesignatedInitExpr*> written_forms(const InitListExpr* forms) {
  const InitListExpr* syntactic = forms->getSyntacticForm() ? forms->getSyntacticForm() : forms;
  const DesignatedInitExpr* legacy = nullptr;
  const DesignatedInitExpr* ported = nullptr;
  for (const Expr* init : syntactic->inits()) {
    const auto* d = dyn_cast_or_null<DesignatedInitExpr>(init);
    if (!d || d->size() != 1 || !d->getDesignator(0)->isFieldDesignator() || !d->getDesignator(0)->getFieldName())
      continue;
    if (d->getDesignator(0)->getFieldName()->getName() == "legacy") legacy = d;
    if (d->getDesignator(0)->getFieldName()->getName() == "ported") ported = d;
  }
  return {legacy, ported};
}

// The function a form's lambda calls and hands back, when that is all its
// body does: `[..](..) { return f(..); }`, `[..](..) -> awaitable<T> {
// co_return co_await g(..); }`.
const FunctionDecl* single_call(const DesignatedInitExpr* form) {
  const auto* lambda = form ? dyn_cast<LambdaExpr>(bare(form->getInit())) : nullptr;
  const Stmt* written = lambda ? lambda->getBody() : nullptr;
  if (const auto* coro = dyn_cast_or_null<CoroutineBodyStmt>(written)) written = coro->getBody();
  const auto* body = dyn_cast_or_null<CompoundStmt>(written);
  if (!body || body->size() != 1) return nullptr;
  const Expr* value = nullptr;
  if (const auto* r = dyn_cast<ReturnStmt>(body->body_front())) value = r->getRetValue();
  if (const auto* r = dyn_cast<CoreturnStmt>(body->body_front())) value = r->getOperand();
  if (!value) return nullptr;
  value = bare(value);
  if (const auto* aw = dyn_cast<CoawaitExpr>(value)) value = bare(aw->getOperand());
  const auto* call = dyn_cast<CallExpr>(value);
  return call ? call->getDirectCallee() : nullptr;
}

// The name of the migration point whose forms `forms` initializes: the
// string its constructor is given.
std::string point_name_of(ASTContext& ctx, const InitListExpr* forms) {
  const InitListExpr* syntactic = forms->getSyntacticForm() ? forms->getSyntacticForm() : forms;
  DynTypedNodeList first = ctx.getParents(*syntactic);
  if (first.empty()) first = ctx.getParents(*forms);
  for (DynTypedNodeList p = first; !p.empty(); p = ctx.getParents(p[0])) {
    if (const auto* construct = p[0].get<CXXConstructExpr>()) {
      if (construct->getNumArgs() >= 2)
        if (const auto* s = dyn_cast<StringLiteral>(bare(construct->getArg(1)))) return s->getString().str();
      break;
    }
    if (!p[0].get<Expr>()) break;
  }
  return "(unnamed)";
}

// A change to the body, with the character offsets it covers.
struct site {
  unsigned begin = 0, end = 0;
  std::vector<edit> edits;
  std::vector<edit> hoists;  // declarations inserted before the statement: they come first
  bool wraps = false;        // run_in_fiber around the call: inner sites go with it
};

// A temporary that g++ 12's coroutine lowering destroys twice when it is
// written inside a co_await expression: an aggregate with a destructor
// (`f(sample{"cpu", 2.5})`), or a lambda whose by-copy captures own
// something.
bool doubly_destroyed(const Expr* arg) {
  const Expr* e = arg;
  while (true) {
    e = e->IgnoreParenImpCasts();
    if (auto* m = dyn_cast<MaterializeTemporaryExpr>(e)) e = m->getSubExpr();
    else if (auto* b = dyn_cast<CXXBindTemporaryExpr>(e)) e = b->getSubExpr();
    else if (auto* f = dyn_cast<CXXFunctionalCastExpr>(e)) e = f->getSubExpr();
    else break;
  }
  auto owns = [](QualType t) {
    const CXXRecordDecl* r = t->getAsCXXRecordDecl();
    return r && r->hasDefinition() && !r->hasTrivialDestructor();
  };
  if (const auto* l = dyn_cast<InitListExpr>(e)) return owns(l->getType());
  if (const auto* l = dyn_cast<LambdaExpr>(e)) {
    for (const LambdaCapture& c : l->captures())
      if (c.getCaptureKind() == LCK_ByCopy && c.capturesVariable() && owns(c.getCapturedVar()->getType())) return true;
  }
  return false;
}

}  // namespace

std::string port_check::port_name(const NamedDecl* d) {
  std::string n = analysis::plain_name(d);
  const std::string anon = "(anonymous namespace)::";
  for (auto at = n.find(anon); at != std::string::npos; at = n.find(anon)) n.erase(at, anon.size());
  return n;
}

port_check::port_check(llvm::StringRef name, clang::tidy::ClangTidyContext* ctx)
    : check_base(name, ctx),
      functions_text_(Options.get("Functions", "").str()),
      forms_text_(Options.get("CoroutineForms", "").str()),
      points_text_(Options.get("Points", "").str()) {
  functions_ = split_list(functions_text_);
  point_names_ = split_list(points_text_);
  for (const std::string& pair : split_list(forms_text_)) {
    const auto eq = pair.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) {
      configurationDiag("'%0' in %1.CoroutineForms is not 'legacy=coroutine'") << pair << name;
      continue;
    }
    std::string legacy = pair.substr(0, eq), coro = pair.substr(eq + 1);
    if (legacy.rfind("::", 0) == 0) legacy.erase(0, 2);
    forms_[legacy] = coro;
  }
}

void port_check::storeOptions(clang::tidy::ClangTidyOptions::OptionMap& opts) {
  check_base::storeOptions(opts);
  Options.store(opts, "Functions", functions_text_);
  Options.store(opts, "CoroutineForms", forms_text_);
  Options.store(opts, "Points", points_text_);
}

void port_check::registerMatchers(MatchFinder* finder) {
  // Nothing named: nothing to collect (`--checks=coport-*` enables this
  // check beside the others).
  if (functions_.empty() && point_names_.empty()) return;
  finder->addMatcher(functionDecl(isDefinition(), unless(isExpansionInSystemHeader()), unless(isImplicit()))
                         .bind("function"),
                     this);
  finder->addMatcher(initListExpr(unless(isExpansionInSystemHeader())).bind("forms"), this);
  finder->addMatcher(cxxMemberCallExpr(unless(isExpansionInSystemHeader()),
                                       callee(cxxMethodDecl(hasName("add"), ofClass(hasName("::coport::messaging::endpoint")))))
                         .bind("rpc_add"),
                     this);
}

bool port_check::wanted(const FunctionDecl* f) const {
  const std::string n = port_name(f);
  return std::any_of(functions_.begin(), functions_.end(),
                     [&](const std::string& w) { return ends_with_name(n, w.rfind("::", 0) == 0 ? w.substr(2) : w); });
}

void port_check::check(const MatchFinder::MatchResult& r) {
  if (ctx_ != r.Context) {
    ctx_ = r.Context;
    found_.clear();
    points_.clear();
    methods_.clear();
  }
  if (const auto* add = r.Nodes.getNodeAs<CXXMemberCallExpr>("rpc_add")) {
    if (std::find(methods_.begin(), methods_.end(), add) == methods_.end()) methods_.push_back(add);
    return;
  }
  if (const auto* f = r.Nodes.getNodeAs<FunctionDecl>("function")) {
    if (f->isThisDeclarationADefinition() && !f->isTemplateInstantiation() && wanted(f) &&
        std::find(found_.begin(), found_.end(), f) == found_.end())
      found_.push_back(f);
    return;
  }
  if (const auto* l = r.Nodes.getNodeAs<InitListExpr>("forms")) {
    const InitListExpr* semantic = l->isSemanticForm() ? l : l->getSemanticForm();
    if (!semantic) return;
    const CXXRecordDecl* rec = semantic->getType()->getAsCXXRecordDecl();
    if (!rec || analysis::plain_name(rec) != "coport::migration::point::forms") return;
    if (std::find(points_.begin(), points_.end(), semantic) == points_.end()) points_.push_back(semantic);
  }
}

void port_check::onEndOfTranslationUnit() {
  if (!ctx_ || (found_.empty() && point_names_.empty())) return;
  analysis& a = analysis_for(*ctx_);
  // Every function named gets its coroutine form's name first, so that
  // one calling another awaits the other's coroutine form.
  std::map<const FunctionDecl*, std::string> names;
  for (const FunctionDecl* f : found_) names[f->getCanonicalDecl()] = coroutine_name(f->getNameAsString());
  // The coroutine forms the program's migration points know: a point whose
  // legacy form calls f and whose ported form calls g.
  known_.clear();
  for (const InitListExpr* forms : points_) {
    const auto [legacy, ported] = written_forms(forms);
    const FunctionDecl* f = single_call(legacy);
    const FunctionDecl* g = single_call(ported);
    if (f && g && analysis::is_coroutine(g)) known_[f->getCanonicalDecl()] = g->getNameAsString();
  }
  // A function that cannot be ported has no coroutine form for the others
  // to await: drop it and look again, until every one left can be.
  for (bool changed = true; changed;) {
    changed = false;
    for (const FunctionDecl* f : found_)
      if (names.count(f->getCanonicalDecl()) && !port(a, f, names, /*emit=*/false)) {
        names.erase(f->getCanonicalDecl());
        changed = true;
      }
  }
  for (const FunctionDecl* f : found_) port(a, f, names, /*emit=*/true);
  auto wanted_point = [&](const std::string& name) {
    return std::find(point_names_.begin(), point_names_.end(), name) != point_names_.end();
  };
  for (const InitListExpr* forms : points_) {
    const std::string point = point_name_of(*ctx_, forms);
    if (wanted_point(point)) port_point(a, forms, point, names);
    else register_point(a, forms, names);
  }
  for (const CXXMemberCallExpr* add : methods_) {
    if (add->getNumArgs() != 3) continue;
    const auto* name = dyn_cast<StringLiteral>(bare(add->getArg(0)));
    if (name && wanted_point(name->getString().str())) port_method(a, add, name->getString().str(), names);
  }
}

std::optional<std::string> port_check::coroutine_body(analysis& a, const FunctionDecl* f, const CompoundStmt* body,
                                                      const std::map<const FunctionDecl*, std::string>& names,
                                                      std::vector<std::string>& left, std::string& reason) {
  const SourceManager& sm = ctx_->getSourceManager();
  const LangOptions& lo = ctx_->getLangOpts();
  const rewriter rw(*ctx_);
  auto fail = [&](const std::string& why) -> std::optional<std::string> {
    reason = why;
    return std::nullopt;
  };
  auto line_of = [&](SourceLocation loc) { return std::to_string(sm.getExpansionLineNumber(loc)); };
  std::vector<site> sites;
  std::set<std::string> left_seen;
  const FileID file = sm.getFileID(body->getBeginLoc());
  auto offset = [&](SourceLocation loc) { return sm.getFileOffset(loc); };
  auto end_offset = [&](const CharSourceRange& r) {
    return r.isTokenRange() ? offset(Lexer::getLocForEndOfToken(r.getEnd(), 0, sm, lo)) : offset(r.getEnd());
  };
  auto in_catch = [&](const Stmt* s) {
    for (DynTypedNodeList p = ctx_->getParents(*s); !p.empty(); p = ctx_->getParents(p[0])) {
      if (p[0].get<CXXCatchStmt>()) return true;
      if (p[0].get<FunctionDecl>() || p[0].get<LambdaExpr>()) return false;
    }
    return false;
  };
  auto add_site = [&](SourceRange covers, std::vector<edit> edits, bool wraps) {
    site s;
    s.begin = offset(covers.getBegin());
    s.end = end_offset(CharSourceRange::getTokenRange(covers));
    s.edits = std::move(edits);
    s.wraps = wraps;
    sites.push_back(std::move(s));
  };
  std::string problem;
  unsigned named = 0;
  // What g++ 12 gets wrong around a co_await (migration_guide.md): a
  // temporary argument it destroys twice is named in a declaration before
  // the statement; a conditional operator whose class-type result holds a
  // co_await is not written at all.
  auto g12_safe = [&](const CallExpr* call, site& s) -> bool {
    const Expr* child = call;
    const Stmt* statement = nullptr;
    bool plain_statement = true;
    for (DynTypedNodeList p = ctx_->getParents(*call); !p.empty(); p = ctx_->getParents(p[0])) {
      if (const auto* cond = p[0].get<AbstractConditionalOperator>()) {
        if (cond->getType()->isRecordType() && cond->getCond() != child) {
          problem = "at line " + line_of(call->getBeginLoc()) +
                    ", a conditional operator would hold a co_await and give a class: g++ 12 destroys such a "
                    "result once too often; write it as if/else, then port it";
          return false;
        }
      }
      if (const auto* e = p[0].get<Expr>()) {
        child = e;
        continue;
      }
      const Stmt* st = p[0].get<Stmt>();
      const Decl* d = p[0].get<Decl>();
      if (d && isa<VarDecl>(d)) continue;  // the initializer of a declaration
      if (st && (isa<DeclStmt>(st) || isa<ReturnStmt>(st) || isa<CoreturnStmt>(st))) {
        const DynTypedNodeList up = ctx_->getParents(*st);
        if (!up.empty() && up[0].get<CompoundStmt>()) statement = st;
        else plain_statement = false;
        break;
      }
      if (st && !isa<CompoundStmt>(st)) plain_statement = false;
      if (st && isa<CompoundStmt>(st)) statement = dyn_cast<Stmt>(child);
      break;
    }
    for (const Expr* arg : call->arguments()) {
      if (!doubly_destroyed(arg)) continue;
      const std::string text = rw.text(arg->getSourceRange());
      if (!statement || !plain_statement || text.empty()) {
        problem = "at line " + line_of(arg->getBeginLoc()) +
                  ", a temporary that g++ 12 destroys twice in a co_await is written inside a condition or a loop "
                  "header: name it first, then port it";
        return false;
      }
      const std::string name = "coport_port_arg" + std::to_string(++named);
      const unsigned column = sm.getExpansionColumnNumber(statement->getBeginLoc());
      s.hoists.push_back({CharSourceRange::getCharRange(statement->getBeginLoc(), statement->getBeginLoc()),
                          "auto " + name + " = " + text + ";  // named: g++ 12 destroys it twice in a co_await\n" +
                              std::string(column > 0 ? column - 1 : 0, ' ')});
      s.edits.push_back({rw.chars(arg->getSourceRange()), "std::move(" + name + ")"});
    }
    return true;
  };
  for (const call_site& c : a.calls_of(f)) {
    if (!c.expr || !c.callee || !problem.empty()) continue;
    const auto* call = dyn_cast<CallExpr>(c.expr);
    // A call of a function whose coroutine form exists or is written now.
    std::string form;
    if (auto it = names.find(c.callee->getCanonicalDecl()); it != names.end()) form = it->second;
    else if (auto it2 = forms_.find(port_name(c.callee)); it2 != forms_.end()) form = last_part(it2->second);
    else if (auto it3 = known_.find(c.callee->getCanonicalDecl()); it3 != known_.end()) form = it3->second;
    if (!form.empty() && call && !isa<CXXOperatorCallExpr>(call)) {
      SourceLocation name_loc;
      if (auto* d = dyn_cast<DeclRefExpr>(call->getCallee()->IgnoreParenImpCasts())) name_loc = d->getLocation();
      else if (auto* me = dyn_cast<MemberExpr>(call->getCallee()->IgnoreParenImpCasts())) name_loc = me->getMemberLoc();
      if (name_loc.isInvalid() || !rw.plain(call->getSourceRange()) || name_loc.isMacroID()) {
        problem = "the call of '" + port_name(c.callee) + "' at line " + line_of(c.loc) + " is written with a macro";
        continue;
      }
      if (in_catch(call)) {
        problem = "the call of '" + port_name(c.callee) + "' at line " + line_of(c.loc) +
                  " is in a catch block, where co_await is not allowed";
        continue;
      }
      std::vector<edit> edits = rw.await_edits(call);
      edits.push_back({CharSourceRange::getTokenRange(name_loc, name_loc), form});
      add_site(call->getSourceRange(), std::move(edits), false);
      g12_safe(call, sites.back());
      continue;
    }
    std::optional<leaf> l = a.leaf_of(c);
    if (l && l->kind == block_kind::thread) continue;
    std::optional<chain> ch = l ? std::nullopt : a.chain_through(c);
    if (!l && !ch) continue;
    const std::string what = l ? l->what : ch->end.what;
    if (in_catch(c.expr)) {
      problem = "'" + what + "' at line " + line_of(c.loc) + " is called in a catch block, where co_await is not allowed";
      continue;
    }
    if (auto fix = rw.certain(c)) {
      add_site(fix->covers, fix->edits, false);
      if (call) g12_safe(call, sites.back());
      continue;
    }
    if (!call) {
      const std::string type = c.expr->getType().getAsString(ctx_->getPrintingPolicy());
      if (what.rfind("boost::fibers::", 0) == 0 && what.find("mutex::") != std::string::npos)
        problem = "it locks a Boost.Fiber mutex at line " + line_of(c.loc) + " ('" + type +
                  "'): that mutex belongs to the fiber that locks it; make it a bridge::mutex first";
      else
        problem = "it constructs '" + type + "' at line " + line_of(c.loc) + ", which blocks fibers (" +
                  (l ? l->text() : ch->text(port_name(c.callee))) + "): port that by hand";
      continue;
    }
    if (l && (what.rfind("boost::fibers::mutex", 0) == 0 || what.rfind("boost::fibers::timed_mutex", 0) == 0 ||
              what.rfind("boost::fibers::recursive", 0) == 0 ||
              what.rfind("boost::fibers::condition_variable", 0) == 0)) {
      problem = "it calls '" + what + "' at line " + line_of(c.loc) +
                ": a Boost.Fiber mutex belongs to the fiber that locks it; make it a bridge::mutex first";
      continue;
    }
    const std::string call_text = rw.text(call->getSourceRange());
    if (call_text.empty()) {
      problem = "the call of '" + what + "' at line " + line_of(c.loc) + " is written with a macro";
      continue;
    }
    const std::string callee = l ? l->what : port_name(c.callee);
    std::string wrapped = "co_await coport::bridge::run_in_fiber([&] { return " + call_text +
                          "; } /* coport-port: still blocks fibers: " + callee + " */)";
    if (rw.await_edits(call).size() == 2) wrapped = "(" + wrapped + ")";
    add_site(call->getSourceRange(), {edit{rw.chars(call->getSourceRange()), wrapped}}, true);
    if (left_seen.insert(callee).second) left.push_back(callee);
  }
  if (!problem.empty()) return fail(problem);
  if (sites.empty())
    return fail("it does not block fibers: coroutines can call it as it is");

  returns rv;
  rv.TraverseStmt(const_cast<CompoundStmt*>(body));
  for (const ReturnStmt* r : rv.found) {
    if (r->getReturnLoc().isMacroID()) return fail("a return at line " + line_of(r->getReturnLoc()) + " is in a macro");
    add_site(SourceRange(r->getReturnLoc(), r->getReturnLoc()),
             {edit{CharSourceRange::getTokenRange(r->getReturnLoc(), r->getReturnLoc()), "co_return"}}, false);
  }

  // A call run in a fiber takes the rewrites inside it along; other
  // rewrites may nest (a ported call in a channel push's argument) as long
  // as their edits do not touch.
  std::sort(sites.begin(), sites.end(), [](const site& x, const site& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.end > y.end;
  });
  std::vector<const site*> kept;
  std::vector<std::pair<unsigned, unsigned>> wrapped;
  for (const site& s : sites) {
    if (std::any_of(wrapped.begin(), wrapped.end(),
                    [&](const auto& w) { return w.first <= s.begin && s.end <= w.second; }))
      continue;  // runs inside the fiber
    if (s.wraps) wrapped.push_back({s.begin, s.end});
    kept.push_back(&s);
  }
  const unsigned body_begin = offset(body->getBeginLoc());
  struct flat_edit {
    unsigned begin, end;
    std::string text;
    bool hoist;
  };
  std::vector<flat_edit> flat;
  for (const site* s : kept) {
    for (const edit& e : s->hoists) flat.push_back({offset(e.range.getBegin()), offset(e.range.getBegin()), e.text, true});
    for (const edit& e : s->edits) {
      if (sm.getFileID(e.range.getBegin()) != file) return fail("a call is written in another file than the body");
      flat.push_back({offset(e.range.getBegin()), end_offset(e.range), e.text, false});
    }
  }
  // Declarations first where several edits start at one place.
  std::stable_sort(flat.begin(), flat.end(), [](const flat_edit& x, const flat_edit& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.hoist != y.hoist ? x.hoist : x.end < y.end;
  });
  for (std::size_t i = 1; i < flat.size(); ++i) {
    const flat_edit& prev = flat[i - 1];
    const flat_edit& cur = flat[i];
    const bool both_insert = prev.begin == prev.end && cur.begin == cur.end && prev.begin == cur.begin;
    if (cur.begin < prev.end || (both_insert && !prev.hoist))
      return fail("two calls that need rewriting overlap at line " +
                  std::to_string(sm.getLineNumber(file, cur.begin)) + ": port that expression by hand");
  }

  // Apply the edits to the body's text, from the last one back.
  std::string text = rw.text(body->getSourceRange());
  for (auto it = flat.rbegin(); it != flat.rend(); ++it) {
    const unsigned b = it->begin - body_begin, e = it->end - body_begin;
    if (b > text.size() || e > text.size() || e < b) return fail("internal: an edit falls outside the body");
    text.replace(b, e - b, it->text);
  }

  return text;
}

bool port_check::port(analysis& a, const FunctionDecl* f, const std::map<const FunctionDecl*, std::string>& names,
                      bool emit) {
  const SourceManager& sm = ctx_->getSourceManager();
  const LangOptions& lo = ctx_->getLangOpts();
  const rewriter rw(*ctx_);
  const std::string legacy = port_name(f);
  const std::string coro = coroutine_name(f->getNameAsString());
  auto refuse = [&](const std::string& reason) {
    if (emit) diag(f->getLocation(), "not ported '%0': %1") << legacy << reason;
    return false;
  };

  if (isa<CXXConstructorDecl>(f) || isa<CXXDestructorDecl>(f) || isa<CXXConversionDecl>(f) ||
      f->isOverloadedOperator())
    return refuse("a constructor, destructor or operator cannot be a coroutine");
  if (f->isMain()) return refuse("main cannot be a coroutine");
  if (analysis::is_coroutine(f)) return refuse("it is a coroutine already");
  if (const auto* m = dyn_cast<CXXMethodDecl>(f); m && m->isVirtual())
    return refuse("it is virtual: its overriders need coroutine forms too; port them together by hand");
  if (f->getDescribedFunctionTemplate() || f->isDependentContext())
    return refuse("it is a template: port it by hand");
  if (f->isVariadic()) return refuse("it takes C variadic arguments");
  const QualType ret = f->getReturnType();
  if (ret->isReferenceType())
    return refuse("it returns a reference, which a coroutine cannot hand back safely: return a value, then port it");
  if (ret->getContainedAutoType()) return refuse("its return type is deduced: write it, then port it");
  const std::string ret_text = rw.text(f->getReturnTypeSourceRange());
  const auto* body = dyn_cast_or_null<CompoundStmt>(f->getBody());
  if (ret_text.empty() || !body || !rw.plain(body->getSourceRange()) || !rw.plain(f->getSourceRange()))
    return refuse("it is written with macros around its signature or body");
  for (const NamedDecl* d : f->getDeclContext()->lookup(&ctx_->Idents.get(coro)))
    if (d) return refuse("'" + coro + "' exists already");

  std::vector<std::string> left;
  std::string reason;
  const std::optional<std::string> edited = coroutine_body(a, f, body, names, left, reason);
  if (!edited) return refuse(reason);
  const std::string& text = *edited;

  // ---- the signature ----
  auto params_of = [&](const FunctionDecl* d, bool defaults) -> std::optional<std::string> {
    std::string out;
    for (const ParmVarDecl* p : d->parameters()) {
      if (!out.empty()) out += ", ";
      const QualType t = p->getType();
      std::string one;
      const TypeSourceInfo* tsi = p->getTypeSourceInfo();
      const bool by_value = taken_by_value(t);
      if (by_value && tsi) {
        TypeLoc tl = tsi->getTypeLoc();
        if (auto ref = tl.getAs<ReferenceTypeLoc>()) {
          const std::string pointee = rw.text(ref.getPointeeLoc().getUnqualifiedLoc().getSourceRange());
          if (pointee.empty()) return std::nullopt;
          one = pointee + (p->getName().empty() ? "" : " " + p->getNameAsString());
        }
      }
      if (one.empty()) {
        SourceRange r = p->getSourceRange();
        if (p->hasDefaultArg() && !p->hasUninstantiatedDefaultArg() && p->getDefaultArg())
          r = SourceRange(r.getBegin(), p->getLocation().isValid() ? p->getLocation() : r.getEnd());
        one = rw.text(r);
        if (one.empty()) return std::nullopt;
      }
      if (defaults && p->hasDefaultArg() && p->getDefaultArg()) {
        const std::string def = rw.text(p->getDefaultArg()->getSourceRange());
        if (def.empty()) return std::nullopt;
        one += " = " + def;
      }
      out += one;
    }
    return out;
  };
  const auto* method = dyn_cast<CXXMethodDecl>(f);
  const FunctionDecl* first = f->getCanonicalDecl();
  const bool declared_before = first != f;
  const bool in_class = method && !f->isOutOfLine();
  auto params = params_of(f, !declared_before);
  if (!params) return refuse("a parameter is written with a macro");
  const std::string tail = method && method->isConst() ? " const" : "";
  std::string qualifier;
  if (f->getQualifierLoc()) {
    qualifier = Lexer::getSourceText(CharSourceRange::getCharRange(f->getQualifierLoc().getBeginLoc(), f->getLocation()),
                                     sm, lo)
                    .str();
  }
  const std::string awaitable = "boost::asio::awaitable<" + ret_text + ">";
  const unsigned column = sm.getExpansionColumnNumber(f->getBeginLoc());
  const std::string indent(column > 0 ? column - 1 : 0, ' ');
  std::string prefix;
  if ((method && method->isStatic() && in_class) || (!method && f->getStorageClass() == SC_Static)) prefix = "static ";
  std::string definition = "\n\n" + indent + "// The coroutine form of " + legacy + ", written by coport-port.\n" +
                           indent + prefix + awaitable + " " + qualifier + coro + "(" + *params + ")" + tail + " " +
                           text;
  const SourceLocation after = Lexer::getLocForEndOfToken(f->getEndLoc(), 0, sm, lo);
  if (!emit) return true;

  auto d = diag(f->getLocation(), "%0");
  std::string message = "ported '" + legacy + "' as '" + coro + "'";
  if (!left.empty()) {
    message += ", with " + std::to_string(left.size()) + " call(s) left in run_in_fiber: ";
    for (std::size_t i = 0; i < left.size(); ++i) message += (i ? ", " : "") + left[i];
  }
  d << message;
  d << FixItHint::CreateInsertion(after, definition);
  if (declared_before && rw.plain(first->getSourceRange())) {
    auto decl_params = params_of(first, true);
    const SourceLocation semi =
        Lexer::findLocationAfterToken(first->getEndLoc(), tok::semi, sm, lo, /*SkipTrailingWhitespaceAndNewLine=*/false);
    if (decl_params && semi.isValid()) {
      const unsigned decl_column = sm.getExpansionColumnNumber(first->getBeginLoc());
      std::string decl_prefix = (method && method->isStatic()) || (!method && first->getStorageClass() == SC_Static)
                                    ? "static "
                                    : "";
      d << FixItHint::CreateInsertion(semi, "\n" + std::string(decl_column > 0 ? decl_column - 1 : 0, ' ') +
                                                 decl_prefix + awaitable + " " + coro + "(" + *decl_params + ")" +
                                                 tail + ";");
    }
  }  return true;
}

void port_check::register_point(analysis&, const InitListExpr* forms,
                                const std::map<const FunctionDecl*, std::string>& names) {
  const auto [legacy, ported_form] = written_forms(forms);
  const bool has_ported = ported_form != nullptr;
  if (!legacy) return;
  const auto* lambda = dyn_cast<LambdaExpr>(bare(legacy->getInit()));
  if (!lambda) return;
  const auto* body = dyn_cast_or_null<CompoundStmt>(lambda->getBody());
  if (!body || body->size() != 1) return;
  const auto* ret = dyn_cast<ReturnStmt>(body->body_front());
  if (!ret || !ret->getRetValue()) return;
  const auto* call = dyn_cast<CallExpr>(bare(ret->getRetValue()));
  if (!call || !call->getDirectCallee()) return;
  const FunctionDecl* callee = call->getDirectCallee();
  auto it = names.find(callee->getCanonicalDecl());
  if (it == names.end()) return;
  const std::string coro = it->second;

  const std::string point = point_name_of(*ctx_, forms);
  const SourceLocation where = legacy->getBeginLoc();
  if (has_ported) {
    diag(where, "not registered '%0' with migration point '%1': the point has a ported form already") << coro << point;
    return;
  }
  // The coroutine form holds its parameters in its frame: an argument
  // that is the lambda's own parameter must not be taken by reference.
  for (unsigned i = 0; i < call->getNumArgs() && i < callee->getNumParams(); ++i) {
    const QualType t = callee->getParamDecl(i)->getType();
    const bool by_value = taken_by_value(t);
    const std::string type_name = t.getNonReferenceType().getUnqualifiedType().getAsString();
    const bool view = type_name.find("basic_string_view") != std::string::npos ||
                      type_name.find("std::span") != std::string::npos;
    const auto* ref = dyn_cast<DeclRefExpr>(bare(call->getArg(i)));
    const bool own = ref && isa<ParmVarDecl>(ref->getDecl()) &&
                     ref->getDecl()->getDeclContext() == lambda->getCallOperator();
    if (own && ((t->isReferenceType() && !by_value) || view)) {
      diag(where, "not registered '%0' with migration point '%1': %2") << coro << point
          << "it takes '" + ref->getDecl()->getNameAsString() +
                 "', the lambda's own parameter, by reference, and would refer to it after the lambda returns";
      return;
    }
  }
  const rewriter rw(*ctx_);
  const std::string lambda_text = rw.text(lambda->getSourceRange());
  SourceLocation name_loc;
  if (auto* d = dyn_cast<DeclRefExpr>(call->getCallee()->IgnoreParenImpCasts())) name_loc = d->getLocation();
  else if (auto* me = dyn_cast<MemberExpr>(call->getCallee()->IgnoreParenImpCasts())) name_loc = me->getMemberLoc();
  if (lambda_text.empty() || name_loc.isInvalid() || name_loc.isMacroID() || !rw.plain(legacy->getSourceRange())) {
    diag(where, "not registered '%0' with migration point '%1': its legacy form is written with a macro") << coro
                                                                                                          << point;
    return;
  }
  const SourceManager& sm = ctx_->getSourceManager();
  const unsigned at = sm.getFileOffset(name_loc) - sm.getFileOffset(lambda->getBeginLoc());
  const unsigned len = callee->getNameAsString().size();
  std::string ported = lambda_text;
  if (at + len > ported.size()) return;
  ported.replace(at, len, coro);
  const unsigned column = sm.getExpansionColumnNumber(where);
  const SourceLocation after = Lexer::getLocForEndOfToken(legacy->getEndLoc(), 0, sm, ctx_->getLangOpts());
  auto d = diag(where, "registered '%0' as the ported form of migration point '%1'");
  d << coro << point;
  d << FixItHint::CreateInsertion(after, ",\n" + std::string(column > 0 ? column - 1 : 0, ' ') + ".ported = " + ported);
}

}  // namespace coport::tidy

namespace coport::tidy {

std::optional<std::string> port_check::port_lambda(analysis& a, const LambdaExpr* l,
                                                   const std::map<const FunctionDecl*, std::string>& names,
                                                   std::vector<std::string>& left, std::string& reason) {
  const CXXMethodDecl* op = l->getCallOperator();
  const rewriter rw(*ctx_);
  if (op->getDescribedFunctionTemplate()) {
    reason = "its legacy form is a generic lambda: port it by hand";
    return std::nullopt;
  }
  const QualType ret = op->getReturnType();
  if (ret->isReferenceType()) {
    reason = "its legacy form returns a reference";
    return std::nullopt;
  }
  const auto* body = dyn_cast_or_null<CompoundStmt>(op->getBody());
  if (!body || !rw.plain(l->getSourceRange())) {
    reason = "its legacy form is written with a macro";
    return std::nullopt;
  }
  auto edited = coroutine_body(a, op, body, names, left, reason);
  if (!edited) return std::nullopt;
  // The result type as its sugar spells it (the coroutine lambda is
  // written where the legacy one is), but a class's member typedef
  // (std::string::size_type), which only its class can name, as what it
  // names.
  QualType result = ret;
  if (const auto* td = result->getAs<TypedefType>(); td && isa<RecordDecl>(td->getDecl()->getDeclContext()))
    result = result.getCanonicalType();
  PrintingPolicy pp = ctx_->getPrintingPolicy();
  pp.SuppressTagKeyword = true;
  const std::string awaitable = "boost::asio::awaitable<" + result.getAsString(pp) + ">";
  const SourceManager& sm = ctx_->getSourceManager();
  std::string head = Lexer::getSourceText(CharSourceRange::getCharRange(l->getBeginLoc(), body->getBeginLoc()), sm,
                                          ctx_->getLangOpts())
                         .str();
  if (l->hasExplicitResultType()) {
    const SourceRange written = op->getReturnTypeSourceRange();
    if (!rw.plain(written)) {
      reason = "its legacy form's return type is written with a macro";
      return std::nullopt;
    }
    const unsigned b = sm.getFileOffset(written.getBegin()) - sm.getFileOffset(l->getBeginLoc());
    const unsigned e = sm.getFileOffset(Lexer::getLocForEndOfToken(written.getEnd(), 0, sm, ctx_->getLangOpts())) -
                       sm.getFileOffset(l->getBeginLoc());
    head.replace(b, e - b, awaitable);
  } else {
    while (!head.empty() && (head.back() == ' ' || head.back() == '\n')) head.pop_back();
    head += " -> " + awaitable + " ";
  }
  return head + *edited;
}

void port_check::report_lambda(const std::string& point, SourceLocation where, const std::optional<std::string>& ported,
                               const std::vector<std::string>& left, const std::string& reason,
                               const std::optional<FixItHint>& fix) {
  const std::string legacy = point + " [legacy]", coro = point + " [ported]";
  if (!ported) {
    diag(where, "not ported '%0': %1") << legacy << reason;
    return;
  }
  std::string message = "ported '" + legacy + "' as '" + coro + "'";
  if (!left.empty()) {
    message += ", with " + std::to_string(left.size()) + " call(s) left in run_in_fiber: ";
    for (std::size_t i = 0; i < left.size(); ++i) message += (i ? ", " : "") + left[i];
  }
  diag(where, "%0") << message;
  auto d = diag(where, "registered '%0' as the ported form of migration point '%1'");
  d << coro << point;
  if (fix) d << *fix;
}

void port_check::port_point(analysis& a, const InitListExpr* forms, const std::string& point,
                            const std::map<const FunctionDecl*, std::string>& names) {
  const auto [legacy, ported_form] = written_forms(forms);
  const bool has_ported = ported_form != nullptr;
  const SourceLocation where = legacy ? legacy->getBeginLoc() : forms->getBeginLoc();
  std::vector<std::string> left;
  std::string reason;
  std::optional<std::string> ported;
  const auto* lambda = legacy ? dyn_cast<LambdaExpr>(bare(legacy->getInit())) : nullptr;
  if (!legacy) reason = "it has no legacy form written as `.legacy = ...`";
  else if (has_ported) reason = "it has a ported form already";
  else if (!lambda) reason = "its legacy form is not a lambda: port the function it names with --function";
  else ported = port_lambda(a, lambda, names, left, reason);
  std::optional<FixItHint> fix;
  if (ported) {
    const SourceManager& sm = ctx_->getSourceManager();
    const unsigned column = sm.getExpansionColumnNumber(where);
    fix = FixItHint::CreateInsertion(Lexer::getLocForEndOfToken(legacy->getEndLoc(), 0, sm, ctx_->getLangOpts()),
                                     ",\n" + std::string(column > 0 ? column - 1 : 0, ' ') + ".ported = " + *ported);
  }
  report_lambda(point, where, ported, left, reason, fix);
}

void port_check::port_method(analysis& a, const CXXMemberCallExpr* add, const std::string& point,
                             const std::map<const FunctionDecl*, std::string>& names) {
  const rewriter rw(*ctx_);
  const SourceManager& sm = ctx_->getSourceManager();
  const LangOptions& lo = ctx_->getLangOpts();
  const auto* lambda = dyn_cast<LambdaExpr>(bare(add->getArg(2)));
  const SourceLocation where = add->getArg(0)->getBeginLoc();
  std::vector<std::string> left;
  std::string reason;
  std::optional<std::string> ported;
  // The function a registration is written in.
  auto enclosing = [&](const Stmt* st) -> const Decl* {
    for (DynTypedNodeList p = ctx_->getParents(*st); !p.empty(); p = ctx_->getParents(p[0]))
      if (const auto* f = p[0].get<FunctionDecl>()) return f;
    return nullptr;
  };
  // The same method registered with a coroutine form in the same function:
  // it has its ported form (a second one would be refused by endpoint::add).
  const CXXMemberCallExpr* other_ported = nullptr;
  if (lambda && !analysis::is_coroutine(lambda->getCallOperator())) {
    for (const CXXMemberCallExpr* other : methods_) {
      if (other == add || other->getNumArgs() != 3) continue;
      const auto* n = dyn_cast<StringLiteral>(bare(other->getArg(0)));
      const auto* l = dyn_cast<LambdaExpr>(bare(other->getArg(2)));
      if (n && n->getString() == point && l && analysis::is_coroutine(l->getCallOperator()) &&
          enclosing(other) == enclosing(add))
        other_ported = other;
    }
  }
  if (!lambda) reason = "its form is not a lambda: port the function it names with --function";
  else if (analysis::is_coroutine(lambda->getCallOperator())) return;  // the ported form's registration
  else if (other_ported)
    reason = "it has a ported form already (line " +
             std::to_string(sm.getExpansionLineNumber(other_ported->getBeginLoc())) + ")";
  else ported = port_lambda(a, lambda, names, left, reason);
  std::optional<FixItHint> fix;
  if (ported) {
    // The same registration again, with the coroutine form, after the
    // statement that registers the legacy form.
    const std::string head =
        Lexer::getSourceText(CharSourceRange::getCharRange(add->getBeginLoc(), add->getArg(2)->getBeginLoc()), sm, lo)
            .str();
    const SourceLocation semi = Lexer::findLocationAfterToken(add->getEndLoc(), tok::semi, sm, lo, false);
    if (head.empty() || semi.isInvalid() || !rw.plain(add->getSourceRange())) {
      ported.reset();
      reason = "its registration is written with a macro, or is not a statement of its own";
    } else {
      const unsigned column = sm.getExpansionColumnNumber(add->getBeginLoc());
      fix = FixItHint::CreateInsertion(semi, "\n" + std::string(column > 0 ? column - 1 : 0, ' ') + head + *ported +
                                                 ");");
    }
  }
  report_lambda(point, where, ported, left, reason, fix);
}

}  // namespace coport::tidy

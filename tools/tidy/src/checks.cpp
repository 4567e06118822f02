#include "checks.hpp"

#include <clang/AST/DeclCXX.h>
#include <clang/AST/ExprCXX.h>
#include <clang/ASTMatchers/ASTMatchers.h>
#include <clang/Basic/SourceManager.h>
#include <llvm/ADT/StringExtras.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/JSON.h>
#include <llvm/Support/Path.h>
#include <llvm/Support/raw_ostream.h>

#include <functional>

namespace coport::tidy {

using namespace clang;
using namespace clang::ast_matchers;

namespace {


// A lambda's call operator and, for a generic lambda, its instantiations.
std::vector<const FunctionDecl*> lambda_functions(const LambdaExpr* l) {
  const CXXMethodDecl* op = l->getCallOperator();
  std::vector<const FunctionDecl*> out{op};
  if (const FunctionTemplateDecl* t = op->getDescribedFunctionTemplate())
    for (const FunctionDecl* spec : t->specializations()) out.push_back(spec);
  return out;
}

// An absolute path without "." and "..": the facts' file names.
std::string absolute_path(llvm::StringRef name) {
  llvm::SmallString<256> path(name);
  llvm::sys::fs::make_absolute(path);
  llvm::sys::path::remove_dots(path, true);
  return std::string(path.str());
}

// The expression a handler argument stands for, without the copies,
// moves and temporaries around it.
const Expr* strip_temporaries(const Expr* e) {
  e = e->IgnoreParenImpCasts();
  while (true) {
    if (auto* m = dyn_cast<MaterializeTemporaryExpr>(e)) e = m->getSubExpr()->IgnoreParenImpCasts();
    else if (auto* b = dyn_cast<CXXBindTemporaryExpr>(e)) e = b->getSubExpr()->IgnoreParenImpCasts();
    else if (auto* c = dyn_cast<CXXConstructExpr>(e); c && c->getNumArgs() == 1)
      e = c->getArg(0)->IgnoreParenImpCasts();
    else return e;
  }
}

const char* const on_loop =
    "it runs on the loop, where a blocked fiber stops every fiber and coroutine of that loop";

}  // namespace

// ---- check_base ----

std::vector<std::string> split_list(llvm::StringRef text) {
  llvm::SmallVector<llvm::StringRef, 8> parts;
  text.split(parts, ';', -1, false);
  std::vector<std::string> out;
  for (llvm::StringRef p : parts)
    if (!p.trim().empty()) out.push_back(p.trim().str());
  return out;
}

void check_base::add_fixes(DiagnosticBuilder& d, const std::optional<rewrite>& fix) {
  if (!fix) return;
  for (const edit& e : fix->edits) d << FixItHint::CreateReplacement(e.range, e.text);
}

check_base::check_base(llvm::StringRef name, clang::tidy::ClangTidyContext* ctx)
    : ClangTidyCheck(name, ctx),
      patterns_text_(Options.get("FiberBlockingFunctions", "").str()),
      program_facts_(Options.get("ProgramFacts", "").str()),
      name_(name.str()) {
  for (const std::string& p : split_list(patterns_text_)) {
    std::string error;
    if (!llvm::Regex(p).isValid(error))
      configurationDiag("invalid regular expression '%0' in %1.FiberBlockingFunctions: %2")
          << p << name << error;
  }
}

void check_base::storeOptions(clang::tidy::ClangTidyOptions::OptionMap& opts) {
  Options.store(opts, "FiberBlockingFunctions", patterns_text_);
  Options.store(opts, "ProgramFacts", program_facts_);
}

analysis& check_base::analysis_for(ASTContext& ctx) {
  if (!analysis_ || ctx_ != &ctx) {
    options o;
    for (const std::string& p : split_list(patterns_text_))
      if (llvm::Regex(p).isValid()) o.blocking_patterns.push_back(p);
    o.program_facts = program_facts_;
    analysis_ = std::make_unique<analysis>(ctx, o);
    ctx_ = &ctx;
    seen_.clear();
    reported_.clear();
  }
  if (!facts_error_reported_ && !analysis_->facts_error().empty()) {
    facts_error_reported_ = true;
    configurationDiag("%0 (option %1.ProgramFacts)") << analysis_->facts_error() << name_;
  }
  return *analysis_;
}

void check_base::register_function_matchers(MatchFinder* finder) {
  finder->addMatcher(functionDecl(isDefinition(), unless(isExpansionInSystemHeader())).bind("function"), this);
  finder->addMatcher(lambdaExpr(unless(isExpansionInSystemHeader())).bind("lambda"), this);
}

std::vector<const FunctionDecl*> check_base::functions_of(const MatchFinder::MatchResult& r) {
  std::vector<const FunctionDecl*> out;
  if (const auto* f = r.Nodes.getNodeAs<FunctionDecl>("function")) out.push_back(f);
  if (const auto* l = r.Nodes.getNodeAs<LambdaExpr>("lambda")) out = lambda_functions(l);
  return out;
}

bool check_base::once(SourceLocation loc, const std::string& text) {
  return reported_.insert({loc.getRawEncoding(), text}).second;
}

void check_base::report_chain_notes(const chain& ch) {
  analysis& a = *analysis_;
  for (std::size_t i = 0; i < ch.steps.size(); ++i) {
    const step& s = ch.steps[i];
    bool last = i + 1 == ch.steps.size() && !ch.from_facts;
    if (last)
      diag(s.loc, "'%0' calls fiber-blocking '%1' here", DiagnosticIDs::Note)
          << a.display_name(s.caller) << s.callee_name;
    else
      diag(s.loc, "'%0' calls '%1' here", DiagnosticIDs::Note) << a.display_name(s.caller) << s.callee_name;
  }
}

void check_base::report_through(analysis& a, const call_site& c, const std::string& who, const rewriter* fixes) {
  std::optional<chain> ch = a.chain_through(c);
  if (!ch) return;
  std::string callee = a.display_name(c.callee);
  std::string text = who + " calls '" + callee + "', which blocks fibers" +
                     (ch->from_facts ? " (known from the program facts)" : "") + ": " + ch->text(callee);
  if (once(c.loc, text)) {
    {
      auto d = diag(c.loc, "%0");
      d << text;
      if (fixes) add_fixes(d, fixes->certain(c));
    }
    report_chain_notes(*ch);
  }
}

// ---- coport-fiber-blocking-in-coroutine ----

void fiber_blocking_in_coroutine::registerMatchers(MatchFinder* finder) { register_function_matchers(finder); }

void fiber_blocking_in_coroutine::check(const MatchFinder::MatchResult& r) {
  analysis& a = analysis_for(*r.Context);
  const rewriter fixes(*r.Context);
  for (const FunctionDecl* f : functions_of(r)) {
    if (!f->hasBody() || f->isImplicit() || !analysis::is_coroutine(f) || a.in_system_header(f) || !first_look(f))
      continue;
    const std::string coro = a.display_name(f);
    for (const call_site& c : a.calls_of(f)) {
      report_left_in_fiber(a, c, coro, fixes);
      if (auto l = a.leaf_of(c)) {
        if (l->kind == block_kind::thread) continue;  // coport-blocking-on-loop
        std::string text = l->kind == block_kind::token
                               ? "coroutine '" + coro + "' calls '" + l->what + "' with the fiber-blocking token '" +
                                     l->token + "'; " + l->instead
                               : "coroutine '" + coro + "' calls fiber-blocking '" + l->what + "'; " + l->instead;
        if (once(c.loc, text)) {
          auto d = diag(c.loc, "%0");
          d << text;
          add_fixes(d, fixes.certain(c));
        }
        continue;
      }
      report_through(a, c, "coroutine '" + coro + "'", &fixes);
    }
  }
}

// A call coport-port left in a fiber: run_in_fiber around it, with the
// marker comment coport-port writes. It does not block the coroutine, but
// it is not ported: reported until someone ports what it calls.
void fiber_blocking_in_coroutine::report_left_in_fiber(analysis& a, const call_site& c, const std::string& coro,
                                                       const rewriter& fixes) {
  auto cw = a.cross_world_of(c);
  if (!cw || cw->kind != "run_in_fiber" || !c.expr) return;
  static const llvm::Regex marker("coport-port: still blocks fibers: ([^ */]+)");
  llvm::SmallVector<llvm::StringRef, 2> m;
  const std::string source = fixes.text(c.expr->getSourceRange());
  if (!marker.match(source, &m)) return;
  const std::string text = "coroutine '" + coro + "' still runs '" + m[1].str() +
                           "' in a fiber, where coport-port left it: co_await a coroutine form of it instead";
  if (once(c.loc, text)) diag(c.loc, "%0") << text;
}

// ---- coport-blocking-on-loop ----

void blocking_on_loop::registerMatchers(MatchFinder* finder) {
  register_function_matchers(finder);
  finder->addMatcher(callExpr(unless(isExpansionInSystemHeader()),
                              callee(functionDecl(matchesName("^::boost::asio::"))))
                         .bind("asio_call"),
                     this);
  finder->addMatcher(
      callExpr(unless(isExpansionInSystemHeader()), callee(functionDecl(hasName("::coport::bridge::spawn"))))
          .bind("asio_call"),
      this);
}

// How a coroutine's own body blocks fibers: "F -> G -> Q", or nothing.
std::optional<std::string> blocking_on_loop::body_blocks(analysis& a, const FunctionDecl* coro) {
  const std::string name = a.display_name(coro);
  for (const call_site& c : a.calls_of(coro))
    if (auto l = a.leaf_of(c); l && l->kind != block_kind::thread) return name + " -> " + l->text();
  for (const call_site& c : a.calls_of(coro)) {
    if (a.leaf_of(c)) continue;
    if (auto ch = a.chain_through(c)) return name + " -> " + ch->text(a.display_name(c.callee));
  }
  return std::nullopt;
}

// A coroutine started natively (asio::co_spawn, bridge::spawn) runs on the
// loop: blocking a fiber there stops the loop.
void blocking_on_loop::check_spawn(analysis& a, const CallExpr* call, const std::string& spawner) {
  if (call->getNumArgs() < 2) return;
  const Expr* ex = call->getArg(0)->IgnoreParenImpCasts();
  if (const CXXRecordDecl* r = ex->getType().getNonReferenceType()->getAsCXXRecordDecl();
      r && analysis::plain_name(r) == "coport::bridge::hosted_executor")
    return;
  const Expr* what = strip_temporaries(call->getArg(1));
  const FunctionDecl* coro = nullptr;
  if (const auto* c = dyn_cast<CallExpr>(what)) coro = c->getDirectCallee();
  else if (const auto* l = dyn_cast<LambdaExpr>(what)) coro = l->getCallOperator();
  const FunctionDecl* def = nullptr;
  if (!coro || !coro->hasBody(def) || !analysis::is_coroutine(def)) return;
  auto chain_text = body_blocks(a, def);
  if (!chain_text) return;
  SourceLocation loc = call->getExprLoc();
  if (const auto* d = dyn_cast<DeclRefExpr>(call->getCallee()->IgnoreParenImpCasts())) loc = d->getLocation();
  loc = r_context_->getSourceManager().getExpansionLoc(loc);
  std::string text = "coroutine '" + a.display_name(def) + "' is started on the loop by '" + spawner +
                     "' and blocks fibers: " + *chain_text + "; " + on_loop +
                     ": start it with bridge::co_spawn_hosted until it is ported";
  if (once(loc, text)) diag(loc, "%0") << text;
}

void blocking_on_loop::check(const MatchFinder::MatchResult& r) {
  analysis& a = analysis_for(*r.Context);
  if (const auto* call = r.Nodes.getNodeAs<CallExpr>("asio_call")) {
    const FunctionDecl* callee = call->getDirectCallee();
    if (!callee) return;
    std::string asio_function = analysis::plain_name(callee);
    r_context_ = r.Context;
    if (asio_function == "boost::asio::co_spawn" || asio_function == "coport::bridge::spawn") {
      check_spawn(a, call, asio_function);
      if (asio_function == "coport::bridge::spawn") return;
    }
    for (const Expr* arg : call->arguments()) {
      const Expr* e = strip_temporaries(arg);
      std::vector<const FunctionDecl*> handlers;
      if (const auto* l = dyn_cast<LambdaExpr>(e)) {
        handlers = lambda_functions(l);
      } else if (const auto* d = dyn_cast<DeclRefExpr>(e)) {
        if (const auto* f = dyn_cast<FunctionDecl>(d->getDecl())) handlers.push_back(f);
        // A lambda held in a local variable: `auto h = [..]{..}; post(ex, h);`
        if (const auto* v = dyn_cast<VarDecl>(d->getDecl()); v && v->hasLocalStorage() && v->getInit())
          if (const auto* l = dyn_cast<LambdaExpr>(strip_temporaries(v->getInit()))) handlers = lambda_functions(l);
      } else if (const auto* u = dyn_cast<UnaryOperator>(e); u && u->getOpcode() == UO_AddrOf) {
        if (const auto* d = dyn_cast<DeclRefExpr>(u->getSubExpr()->IgnoreParenImpCasts()))
          if (const auto* f = dyn_cast<FunctionDecl>(d->getDecl())) handlers.push_back(f);
      }
      for (const FunctionDecl* h : handlers) {
        const FunctionDecl* def = nullptr;
        if (!h->hasBody(def) || analysis::is_coroutine(def)) continue;
        check_handler(a, def, asio_function);
      }
    }
    return;
  }
  for (const FunctionDecl* f : functions_of(r)) {
    if (!f->hasBody() || f->isImplicit() || !analysis::is_coroutine(f) || a.in_system_header(f) || !first_look(f))
      continue;
    const std::string coro = a.display_name(f);
    for (const call_site& c : a.calls_of(f)) {
      auto l = a.leaf_of(c);
      if (!l || l->kind != block_kind::thread) continue;
      std::string text = "coroutine '" + coro + "' calls thread-blocking '" + l->what +
                         "'; it stops the loop thread: " + l->instead;
      if (once(c.loc, text)) diag(c.loc, "%0") << text;
    }
  }
}

void blocking_on_loop::check_handler(analysis& a, const FunctionDecl* handler, const std::string& asio_function) {
  if (!first_look(handler)) return;
  const std::string who = "Asio handler passed to '" + asio_function + "'";
  for (const call_site& c : a.calls_of(handler)) {
    if (auto l = a.leaf_of(c)) {
      std::string text = l->kind == block_kind::thread
                             ? who + " calls thread-blocking '" + l->what + "'; it stops the loop thread"
                             : who + " calls fiber-blocking '" + l->text() + "'; " + on_loop;
      if (once(c.loc, text)) diag(c.loc, "%0") << text;
      continue;
    }
    report_through(a, c, who);
  }
}

// ---- coport-inventory-facts ----

inventory_facts::inventory_facts(llvm::StringRef name, clang::tidy::ClangTidyContext* ctx)
    : ClangTidyCheck(name, ctx),
      directory_(Options.get("Directory", "").str()),
      patterns_text_(Options.getLocalOrGlobal("FiberBlockingFunctions", "").str()) {}

void inventory_facts::storeOptions(clang::tidy::ClangTidyOptions::OptionMap& opts) {
  Options.store(opts, "Directory", directory_);
}

// Without a Directory (coport-* enabled as a whole) it does nothing.
void inventory_facts::registerMatchers(MatchFinder* finder) {
  if (directory_.empty()) return;
  finder->addMatcher(functionDecl(isDefinition(), unless(isExpansionInSystemHeader())).bind("function"), this);
  finder->addMatcher(lambdaExpr(unless(isExpansionInSystemHeader())).bind("lambda"), this);
}

void inventory_facts::check(const MatchFinder::MatchResult& r) {
  if (!analysis_ || ctx_ != r.Context) {
    options o;
    for (const std::string& p : split_list(patterns_text_))
      if (llvm::Regex(p).isValid()) o.blocking_patterns.push_back(p);
    analysis_ = std::make_unique<analysis>(*r.Context, o);
    ctx_ = r.Context;
    functions_.clear();
    seen_.clear();
  }
  // The program's functions: not the implicit ones (a lambda's conversion
  // to a function pointer), not the runtime's internals (coport's detail
  // namespace when its headers are not system headers).
  auto add = [&](const FunctionDecl* f) {
    if (f->hasBody() && !f->isImplicit() && !f->isDependentContext() && analysis_->follows_name(f) &&
        seen_.insert(f).second)
      functions_.push_back(f);
  };
  if (const auto* f = r.Nodes.getNodeAs<FunctionDecl>("function")) add(f);
  if (const auto* l = r.Nodes.getNodeAs<LambdaExpr>("lambda"))
    for (const FunctionDecl* f : lambda_functions(l)) add(f);
}

void inventory_facts::onEndOfTranslationUnit() {
  if (directory_.empty() || !analysis_) return;
  analysis& a = *analysis_;
  const SourceManager& sm = ctx_->getSourceManager();
  auto where = [&](SourceLocation loc, llvm::json::Object& o) {
    PresumedLoc p = sm.getPresumedLoc(sm.getExpansionLoc(loc));
    if (p.isInvalid()) return;
    o["file"] = absolute_path(p.getFilename());
    o["line"] = static_cast<int64_t>(p.getLine());
    o["column"] = static_cast<int64_t>(p.getColumn());
  };

  llvm::json::Array functions;
  std::set<const FunctionDecl*> listed(functions_.begin(), functions_.end());
  std::vector<const FunctionDecl*> declared_only;
  std::set<std::string> declared_usrs;
  auto describe = [&](const FunctionDecl* f, bool defined) {
    llvm::json::Object fo;
    fo["usr"] = a.usr(f);
    fo["name"] = a.display_name(f);
    where(f->getLocation(), fo);
    fo["defined"] = defined;
    fo["coroutine"] = defined && analysis::is_coroutine(f);
    fo["marked"] = a.marked(f).has_value();
    return fo;
  };
  for (const FunctionDecl* f : functions_) {
    llvm::json::Object fo = describe(f, true);
    llvm::json::Array blocks, calls, cross;
    for (const call_site& c : a.calls_of(f)) {
      if (auto x = a.cross_world_of(c)) {
        llvm::json::Object o{{"kind", x->kind}, {"what", x->what}};
        where(c.loc, o);
        cross.push_back(std::move(o));
      }
      if (auto l = a.leaf_of(c)) {
        llvm::json::Object o{{"what", l->text()}, {"kind", to_string(l->kind)}, {"via", llvm::json::Array()}};
        where(c.loc, o);
        blocks.push_back(std::move(o));
        continue;
      }
      if (!c.callee) continue;
      const FunctionDecl* def = nullptr;
      bool has_body = c.callee->hasBody(def);
      if (a.in_system_header(c.callee)) {
        // The program's own code is joined across translation units; a
        // library's is resolved here, as the checks do.
        if (has_body && a.follows(c.callee))
          if (const std::optional<chain>& ch = a.fiber_chain(def)) {
            llvm::json::Array via;
            via.push_back(a.display_name(c.callee));
            for (std::size_t i = 0; i + 1 < ch->steps.size(); ++i) via.push_back(ch->steps[i].callee_name);
            llvm::json::Object o{{"what", ch->end.text()}, {"kind", to_string(ch->end.kind)}, {"via", std::move(via)}};
            where(c.loc, o);
            blocks.push_back(std::move(o));
          }
        continue;
      }
      if (!a.follows(c.callee)) continue;
      std::string u = a.usr(c.callee);
      if (u.empty()) continue;
      llvm::json::Object o{{"usr", u}, {"name", a.display_name(c.callee)}};
      where(c.loc, o);
      calls.push_back(std::move(o));
      if (!has_body && !listed.count(c.callee) && declared_usrs.insert(u).second)
        declared_only.push_back(c.callee);
    }
    fo["blocks"] = std::move(blocks);
    fo["calls"] = std::move(calls);
    fo["cross_world"] = std::move(cross);
    functions.push_back(std::move(fo));
  }
  for (const FunctionDecl* f : declared_only) {
    llvm::json::Object fo = describe(f, false);
    fo["blocks"] = llvm::json::Array();
    fo["calls"] = llvm::json::Array();
    fo["cross_world"] = llvm::json::Array();
    functions.push_back(std::move(fo));
  }

  std::string main_file;
  if (const FileEntry* fe = sm.getFileEntryForID(sm.getMainFileID())) main_file = absolute_path(fe->getName());
  llvm::json::Object root{{"format", "coport-inventory-facts/1"},
                          {"main_file", main_file},
                          {"functions", std::move(functions)}};

  llvm::sys::fs::create_directories(directory_);
  std::string hash = llvm::utohexstr(std::hash<std::string>{}(main_file), false, 16);
  while (hash.size() < 16) hash.insert(hash.begin(), '0');
  llvm::SmallString<256> path(directory_);
  llvm::sys::path::append(path, hash + ".json");
  llvm::SmallString<256> tmp(path);
  tmp += ".tmp";
  std::error_code ec;
  {
    llvm::raw_fd_ostream out(tmp, ec, llvm::sys::fs::OF_Text);
    if (ec) {
      configurationDiag("cannot write the facts to %0: %1") << std::string(tmp.str()) << ec.message();
      return;
    }
    out << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
  }
  if ((ec = llvm::sys::fs::rename(tmp, path)))
    configurationDiag("cannot write the facts to %0: %1") << std::string(path.str()) << ec.message();
}

}  // namespace coport::tidy

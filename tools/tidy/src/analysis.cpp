#include "analysis.hpp"

#include <clang/AST/Attr.h>
#include <clang/AST/DeclCXX.h>
#include <clang/AST/RecursiveASTVisitor.h>
#include <clang/AST/StmtCXX.h>
#include <clang/Basic/SourceManager.h>
#include <clang/Index/USRGeneration.h>
#include <llvm/ADT/SmallString.h>
#include <llvm/Support/JSON.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/Path.h>

#include <algorithm>
#include <set>
#include <mutex>

namespace coport::tidy {

using namespace clang;

const char* to_string(block_kind k) {
  switch (k) {
    case block_kind::fiber: return "fiber";
    case block_kind::token: return "token";
    case block_kind::thread: return "thread";
  }
  return "fiber";
}

std::string chain::text(const std::string& first) const {
  std::string out = first;
  for (const step& s : steps) out += " -> " + s.callee_name;
  if (from_facts)
    for (std::size_t i = 1; i < facts_tail.size(); ++i) out += " -> " + facts_tail[i];
  return out;
}

namespace {

// ---- what blocks by itself ----

struct known_leaf {
  const char* name;
  block_kind kind;
  const char* instead;
};

constexpr const char* instead_mutex =
    "co_await a coport::bridge::mutex (auto lk = co_await m.scoped_lock()), or run the code in a fiber "
    "with bridge::run_in_fiber";
constexpr const char* instead_condition =
    "co_await a coport::bridge::event (ev.async_wait), or run the code in a fiber with "
    "bridge::run_in_fiber";
constexpr const char* instead_future =
    "co_await the result as an awaitable, or run the code in a fiber with bridge::run_in_fiber";
constexpr const char* instead_channel =
    "co_await a coport::bridge::channel (async_push / async_pop), or run the code in a fiber with "
    "bridge::run_in_fiber";
constexpr const char* instead_wait =
    "port what it waits for to a coroutine and co_await it, or run the code in a fiber with "
    "bridge::run_in_fiber";
constexpr const char* instead_sleep = "co_await an asio::steady_timer";
constexpr const char* instead_yield = "co_await asio::post(executor, asio::use_awaitable)";
constexpr const char* instead_marked =
    "port it to a coroutine and co_await it, or run it in a fiber with bridge::run_in_fiber";
constexpr const char* instead_thread =
    "co_await an asio::steady_timer or an asynchronous operation instead";

const llvm::StringMap<known_leaf>& leaf_table() {
  static const llvm::StringMap<known_leaf> table = [] {
    llvm::StringMap<known_leaf> t;
    auto add = [&](std::string name, block_kind k, const char* instead) {
      t[name] = known_leaf{nullptr, k, instead};
    };
    for (const char* cls : {"mutex", "timed_mutex", "recursive_mutex", "recursive_timed_mutex"})
      for (const char* fn : {"lock", "try_lock_for", "try_lock_until"})
        add(std::string("boost::fibers::") + cls + "::" + fn, block_kind::fiber, instead_mutex);
    for (const char* cls : {"condition_variable", "condition_variable_any"})
      for (const char* fn : {"wait", "wait_for", "wait_until"})
        add(std::string("boost::fibers::") + cls + "::" + fn, block_kind::fiber, instead_condition);
    // (future and shared_future take wait* from detail::future_base.)
    for (const char* cls : {"future", "shared_future", "detail::future_base"})
      for (const char* fn : {"get", "wait", "wait_for", "wait_until"})
        add(std::string("boost::fibers::") + cls + "::" + fn, block_kind::fiber, instead_future);
    for (const char* cls : {"buffered_channel", "unbuffered_channel"})
      for (const char* fn : {"push", "pop", "value_pop", "push_wait_for", "push_wait_until", "pop_wait_for",
                             "pop_wait_until"})
        add(std::string("boost::fibers::") + cls + "::" + fn, block_kind::fiber, instead_channel);
    add("boost::fibers::barrier::wait", block_kind::fiber, instead_wait);
    add("boost::fibers::fiber::join", block_kind::fiber, instead_wait);
    add("boost::this_fiber::sleep_for", block_kind::fiber, instead_sleep);
    add("boost::this_fiber::sleep_until", block_kind::fiber, instead_sleep);
    add("boost::this_fiber::yield", block_kind::fiber, instead_yield);

    // The thread's own blocking calls.
    add("std::this_thread::sleep_for", block_kind::thread, instead_thread);
    add("std::this_thread::sleep_until", block_kind::thread, instead_thread);
    add("std::thread::join", block_kind::thread, instead_thread);
    add("std::jthread::join", block_kind::thread, instead_thread);
    for (const char* cls : {"std::future", "std::shared_future", "std::__basic_future"})
      for (const char* fn : {"get", "wait", "wait_for", "wait_until"})
        add(std::string(cls) + "::" + fn, block_kind::thread, instead_thread);
    for (const char* cls :
         {"std::condition_variable", "std::condition_variable_any", "std::_V2::condition_variable_any"})
      for (const char* fn : {"wait", "wait_for", "wait_until"})
        add(std::string(cls) + "::" + fn, block_kind::thread, instead_thread);
    for (const char* fn : {"sleep", "usleep", "nanosleep", "clock_nanosleep", "poll", "ppoll", "select",
                           "pselect", "epoll_wait", "accept", "accept4", "connect", "recv", "recvfrom",
                           "recvmsg", "read", "wait", "waitpid", "system"})
      add(fn, block_kind::thread, instead_thread);
    return t;
  }();
  return table;
}

// Where the analysis does not look inside: the code behind these names runs
// elsewhere or is the runtime itself.
constexpr const char* not_followed_prefixes[] = {
    "boost::fibers::", "boost::this_fiber::", "boost::asio::", "boost::context::",
    "coport::bridge::detail::",
};

// The calls of one body, in source order.
class collector : public RecursiveASTVisitor<collector> {
 public:
  explicit collector(const SourceManager& sm, std::vector<call_site>& out) : sm_(sm), out_(out) {}

  bool shouldVisitTemplateInstantiations() const { return true; }
  // Not a coroutine's implicit code: its promise calls and the awaiter
  // calls of each co_await belong to the coroutine machinery.
  bool shouldVisitImplicitCode() const { return false; }

  // A lambda's body is a function of its own: only the captures' initial
  // values are evaluated here.
  bool TraverseLambdaExpr(LambdaExpr* e) {
    for (Expr* init : e->capture_inits())
      if (init) TraverseStmt(init);
    return true;
  }
  bool TraverseCXXRecordDecl(CXXRecordDecl*) { return true; }
  bool TraverseFunctionDecl(FunctionDecl*) { return true; }
  bool TraverseFunctionTemplateDecl(FunctionTemplateDecl*) { return true; }
  bool TraverseClassTemplateDecl(ClassTemplateDecl*) { return true; }

  bool VisitCallExpr(CallExpr* e) {
    call_site c;
    c.expr = e;
    c.callee = e->getDirectCallee();
    if (c.callee && c.callee->getBuiltinID() != 0) return true;
    SourceLocation loc = e->getExprLoc();
    if (auto* m = dyn_cast<CXXMemberCallExpr>(e)) {
      if (auto* me = dyn_cast<MemberExpr>(m->getCallee()->IgnoreParenImpCasts())) loc = me->getMemberLoc();
    } else if (!isa<CXXOperatorCallExpr>(e)) {
      if (auto* d = dyn_cast<DeclRefExpr>(e->getCallee()->IgnoreParenImpCasts())) loc = d->getLocation();
      else if (auto* me = dyn_cast<MemberExpr>(e->getCallee()->IgnoreParenImpCasts())) loc = me->getMemberLoc();
    }
    c.loc = sm_.getExpansionLoc(loc);
    for (const Expr* a : e->arguments()) c.args.push_back(a);
    add(std::move(c));
    return true;
  }

  // A local's destructor runs at the end of its scope, a temporary's at
  // the end of its full expression: calls like the others, at the object.
  bool VisitVarDecl(VarDecl* v) {
    if (!v->hasLocalStorage() || isa<ParmVarDecl>(v)) return true;
    add_destructor(v, v->getType(), v->getLocation());
    return true;
  }
  bool VisitCXXBindTemporaryExpr(CXXBindTemporaryExpr* e) {
    if (const CXXDestructorDecl* d = e->getTemporary()->getDestructor()) add_destructor_call(e, d, e->getBeginLoc());
    return true;
  }

  bool VisitCXXConstructExpr(CXXConstructExpr* e) {
    call_site c;
    c.expr = e;
    c.callee = e->getConstructor();
    c.loc = sm_.getExpansionLoc(e->getLocation());
    for (const Expr* a : e->arguments()) c.args.push_back(a);
    add(std::move(c));
    return true;
  }

 private:
  // An expression reached twice (a co_await's operand) is one call.
  void add(call_site c) {
    if (seen_.insert(c.expr).second) out_.push_back(std::move(c));
  }

  void add_destructor(const void* key, QualType t, SourceLocation loc) {
    const CXXRecordDecl* r = t.getNonReferenceType()->getAsCXXRecordDecl();
    if (t->isReferenceType() || !r || !r->hasDefinition()) return;
    if (const CXXDestructorDecl* d = r->getDestructor()) add_destructor_call(key, d, loc);
  }
  void add_destructor_call(const void* key, const CXXDestructorDecl* d, SourceLocation loc) {
    if (d->isTrivial() || !destructors_.insert(key).second) return;
    call_site c;
    c.callee = d;
    c.loc = sm_.getExpansionLoc(loc);
    out_.push_back(std::move(c));
  }

  std::set<const Expr*> seen_;
  std::set<const void*> destructors_;
  const SourceManager& sm_;
  std::vector<call_site>& out_;
};

const FunctionDecl* definition_of(const FunctionDecl* f) {
  const FunctionDecl* def = nullptr;
  if (f && f->hasBody(def)) return def;
  return nullptr;
}

std::optional<std::string> string_arg(const Expr* e) {
  if (!e) return std::nullopt;
  e = e->IgnoreParenImpCasts();
  if (auto* c = dyn_cast<ConstantExpr>(e)) e = c->getSubExpr()->IgnoreParenImpCasts();
  if (auto* s = dyn_cast<StringLiteral>(e)) return s->getString().str();
  return std::nullopt;
}

}  // namespace

// ---- program facts ----

std::shared_ptr<const program_facts> program_facts::load(const std::string& path) {
  static std::mutex m;
  static std::map<std::string, std::shared_ptr<const program_facts>> cache;
  std::lock_guard lk(m);
  auto it = cache.find(path);
  if (it != cache.end()) return it->second;
  auto facts = std::make_shared<program_facts>();
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf) {
    facts->error = "cannot read the program facts " + path + ": " + buf.getError().message();
  } else if (auto v = llvm::json::parse((*buf)->getBuffer()); !v) {
    facts->error = "the program facts " + path + " are not JSON: " + llvm::toString(v.takeError());
  } else {
    const llvm::json::Object* o = v->getAsObject();
    const llvm::json::Array* list = o ? o->getArray("blocking") : nullptr;
    auto format = o ? o->getString("format") : std::nullopt;
    if (!list || !format || *format != "coport-program-facts/1") {
      facts->error = "the program facts " + path +
                     " are not coport-program-facts/1 (written by coport-inventory --program-facts)";
    } else {
      for (const llvm::json::Value& e : *list) {
        const llvm::json::Object* f = e.getAsObject();
        if (!f) continue;
        auto usr = f->getString("usr");
        const llvm::json::Array* ch = f->getArray("chain");
        if (!usr || !ch) continue;
        std::vector<std::string> names;
        for (const llvm::json::Value& n : *ch)
          if (auto s = n.getAsString()) names.push_back(s->str());
        facts->chains[usr->str()] = std::move(names);
      }
    }
  }
  cache[path] = facts;
  return facts;
}

// ---- analysis ----

analysis::analysis(ASTContext& ctx, const options& opts) : ctx_(ctx) {
  for (const std::string& p : opts.blocking_patterns) {
    if (p.empty()) continue;
    patterns_.push_back(std::make_unique<llvm::Regex>(p));
  }
  if (!opts.program_facts.empty()) facts_ = program_facts::load(opts.program_facts);
}

const std::string& analysis::facts_error() const {
  static const std::string none;
  return facts_ ? facts_->error : none;
}

std::string analysis::plain_name(const NamedDecl* d) {
  std::vector<std::string> parts;
  parts.push_back(d->getNameAsString());
  for (const DeclContext* dc = d->getDeclContext(); dc; dc = dc->getParent()) {
    if (auto* ns = dyn_cast<NamespaceDecl>(dc)) {
      if (ns->isInline()) continue;
      parts.push_back(ns->isAnonymousNamespace() ? "(anonymous namespace)" : ns->getNameAsString());
    } else if (auto* r = dyn_cast<RecordDecl>(dc)) {
      parts.push_back(r->isLambda() ? "(lambda)" : r->getNameAsString());
    } else if (auto* f = dyn_cast<FunctionDecl>(dc)) {
      parts.push_back(f->getNameAsString());
    } else if (isa<TranslationUnitDecl>(dc)) {
      break;
    }
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += "::";
    out += *it;
  }
  return out;
}

std::string analysis::display_name(const FunctionDecl* f) const {
  if (auto* m = dyn_cast<CXXMethodDecl>(f); m && m->getParent()->isLambda()) {
    const SourceManager& sm = ctx_.getSourceManager();
    SourceLocation loc = sm.getExpansionLoc(m->getParent()->getLocation());
    PresumedLoc p = sm.getPresumedLoc(loc);
    if (p.isValid())
      return "(lambda at " + llvm::sys::path::filename(p.getFilename()).str() + ":" +
             std::to_string(p.getLine()) + ":" + std::to_string(p.getColumn()) + ")";
    return "(lambda)";
  }
  return f->getQualifiedNameAsString();
}

std::string analysis::usr(const Decl* d) const {
  llvm::SmallString<128> buf;
  if (index::generateUSRForDecl(d, buf)) return {};
  return std::string(buf.str());
}

bool analysis::is_coroutine(const FunctionDecl* f) {
  const FunctionDecl* def = definition_of(f);
  return def && isa_and_nonnull<CoroutineBodyStmt>(def->getBody());
}

bool analysis::in_system_header(SourceLocation loc) const {
  const SourceManager& sm = ctx_.getSourceManager();
  return loc.isValid() && sm.isInSystemHeader(sm.getExpansionLoc(loc));
}

bool analysis::in_system_header(const Decl* d) const { return in_system_header(d->getLocation()); }

const std::vector<call_site>& analysis::calls_of(const FunctionDecl* f) {
  auto it = calls_.find(f);
  if (it != calls_.end()) return it->second;
  std::vector<call_site> out;
  if (Stmt* body = f->getBody()) {
    collector c(ctx_.getSourceManager(), out);
    if (auto* ctor = dyn_cast<CXXConstructorDecl>(f))
      for (CXXCtorInitializer* init : ctor->inits())
        if (init->isWritten() && init->getInit()) c.TraverseStmt(init->getInit());
    c.TraverseStmt(body);
  }
  return calls_[f] = std::move(out);
}

std::optional<std::string> analysis::annotation(const Decl* d, llvm::StringRef name) const {
  auto look = [&](const Decl* x) -> std::optional<std::string> {
    for (const Decl* r : x->redecls())
      for (const auto* a : r->specific_attrs<AnnotateAttr>())
        if (a->getAnnotation() == name) {
          if (a->args_size() > 0)
            if (auto s = string_arg(*a->args_begin())) return s;
          return std::string();
        }
    return std::nullopt;
  };
  if (auto s = look(d)) return s;
  if (auto* f = dyn_cast<FunctionDecl>(d)) {
    if (const FunctionDecl* p = f->getTemplateInstantiationPattern())
      if (auto s = look(p)) return s;
    if (const FunctionTemplateDecl* t = f->getPrimaryTemplate())
      if (auto s = look(t->getTemplatedDecl())) return s;
  }
  if (auto* r = dyn_cast<CXXRecordDecl>(d)) {
    if (const CXXRecordDecl* p = r->getTemplateInstantiationPattern())
      if (auto s = look(p)) return s;
  }
  return std::nullopt;
}

std::optional<std::string> analysis::marked(const FunctionDecl* f) const {
  return annotation(f, "coport::fiber_blocking");
}

bool analysis::matches_option(const std::string& name) const {
  for (const auto& p : patterns_)
    if (p->match(name)) return true;
  return false;
}

std::optional<std::string> analysis::token_type(const Expr* arg) const {
  if (!arg) return std::nullopt;
  QualType t = arg->getType().getNonReferenceType().getCanonicalType().getUnqualifiedType();
  const CXXRecordDecl* r = t->getAsCXXRecordDecl();
  if (!r) return std::nullopt;
  std::string name = plain_name(r);
  if (annotation(r, "coport::fiber_blocking_token") || name == "boost::fibers::asio::yield_t") return name;
  return std::nullopt;
}

std::optional<leaf> analysis::leaf_of(const call_site& c) const {
  if (!c.callee) return std::nullopt;
  std::string name = plain_name(c.callee);
  // An operation given a fiber token. The token's own members (its copy,
  // operator[]) are not operations.
  for (const Expr* a : c.args) {
    if (auto t = token_type(a)) {
      if (auto* parent = dyn_cast<CXXRecordDecl>(c.callee->getDeclContext()); parent && plain_name(parent) == *t)
        continue;
      return leaf{block_kind::token, name, *t, "co_await it with asio::use_awaitable"};
    }
  }
  if (auto m = marked(c.callee)) return leaf{block_kind::fiber, name, {}, m->empty() ? instead_marked : *m};
  const auto& table = leaf_table();
  auto it = table.find(name);
  if (it != table.end()) {
    const known_leaf& k = it->second;
    // A member inherited from a detail base is named by the object's
    // class: boost::fibers::future::wait, not ...detail::future_base::wait.
    if (name.find("::detail::") != std::string::npos)
      if (auto* m = dyn_cast_or_null<CXXMemberCallExpr>(c.expr))
        if (const Expr* obj = m->getImplicitObjectArgument())  // (before the cast to the base)
          if (const CXXRecordDecl* r = obj->IgnoreParenImpCasts()->getType()->getPointeeCXXRecordDecl()
                                           ? obj->IgnoreParenImpCasts()->getType()->getPointeeCXXRecordDecl()
                                           : obj->IgnoreParenImpCasts()->getType()->getAsCXXRecordDecl())
            return leaf{k.kind, plain_name(r) + "::" + c.callee->getNameAsString(), {}, k.instead};
    // A thread-blocking C call is the C library's, not a function of the
    // same name in the program.
    if (k.kind == block_kind::thread && name.find("::") == std::string::npos && !in_system_header(c.callee))
      return std::nullopt;
    return leaf{k.kind, name, {}, k.instead};
  }
  if (!patterns_.empty() && (matches_option(name) || matches_option(c.callee->getQualifiedNameAsString())))
    return leaf{block_kind::fiber, name, {}, instead_marked};
  return std::nullopt;
}

bool analysis::follows(const FunctionDecl* callee) const {
  if (!callee) return false;
  if (is_coroutine(callee)) return false;
  if (auto kind = annotation(callee, "coport::cross_world"); kind && *kind != "await") return false;
  return follows_name(callee);
}

bool analysis::follows_name(const FunctionDecl* f) {
  std::string name = plain_name(f);
  if (name == "coport::bridge::spawn_fiber") return false;
  for (const char* p : not_followed_prefixes)
    if (llvm::StringRef(name).startswith(p)) return false;
  return true;
}

std::optional<cross_world_site> analysis::cross_world_of(const call_site& c) const {
  if (!c.callee) return std::nullopt;
  if (auto kind = annotation(c.callee, "coport::cross_world"))
    return cross_world_site{*kind, plain_name(c.callee), c.loc};
  for (const Expr* a : c.args) {
    if (!a) continue;
    QualType t = a->getType().getNonReferenceType().getCanonicalType().getUnqualifiedType();
    const CXXRecordDecl* r = t->getAsCXXRecordDecl();
    if (!r) continue;
    if (auto kind = annotation(r, "coport::cross_world")) {
      if (auto* parent = dyn_cast<CXXRecordDecl>(c.callee->getDeclContext()); parent && parent == r) continue;
      if (auto* parent = dyn_cast<CXXRecordDecl>(c.callee->getDeclContext());
          parent && plain_name(parent) == plain_name(r))
        continue;
      return cross_world_site{*kind, plain_name(c.callee) + " with " + plain_name(r), c.loc};
    }
  }
  return std::nullopt;
}

std::optional<chain> analysis::facts_chain(const call_site& c) const {
  if (!facts_ || !c.callee || definition_of(c.callee)) return std::nullopt;
  auto it = facts_->chains.find(usr(c.callee));
  if (it == facts_->chains.end() || it->second.empty()) return std::nullopt;
  chain ch;
  ch.from_facts = true;
  ch.facts_tail = it->second;
  ch.end.kind = block_kind::fiber;
  ch.end.what = it->second.back();
  return ch;
}

std::optional<chain> analysis::chain_through(const call_site& c) {
  if (!c.callee) return std::nullopt;
  if (const FunctionDecl* def = definition_of(c.callee); def && follows(c.callee)) return fiber_chain(def);
  return facts_chain(c);
}

const std::optional<chain>& analysis::fiber_chain(const FunctionDecl* f) {
  static const std::optional<chain> none;
  auto it = chains_.find(f);
  if (it != chains_.end()) return it->second;
  if (in_progress_.lookup(f)) return none;  // recursion: the way round adds nothing
  in_progress_[f] = true;
  std::optional<chain> result;
  const std::vector<call_site> calls = calls_of(f);
  for (const call_site& c : calls) {
    auto l = leaf_of(c);
    if (l && l->kind != block_kind::thread) {
      chain ch;
      ch.steps.push_back(step{f, c.loc, l->text()});
      ch.end = *l;
      result = std::move(ch);
      break;
    }
  }
  if (!result) {
    for (const call_site& c : calls) {
      if (leaf_of(c)) continue;
      std::optional<chain> found = chain_through(c);
      if (!found) continue;
      found->steps.insert(found->steps.begin(), step{f, c.loc, display_name(c.callee)});
      if (!result || found->steps.size() < result->steps.size()) result = std::move(found);
    }
  }
  in_progress_[f] = false;
  return chains_[f] = std::move(result);
}

}  // namespace coport::tidy

// What blocks a fiber, and which functions reach it: the analysis shared by
// the coport-* checks (checks.cpp). One `analysis` serves one translation
// unit; its answers are memoized per function.
#ifndef COPORT_TIDY_ANALYSIS_HPP
#define COPORT_TIDY_ANALYSIS_HPP

#include <clang/AST/ASTContext.h>
#include <clang/AST/Decl.h>
#include <clang/AST/Expr.h>
#include <clang/AST/ExprCXX.h>
#include <llvm/ADT/DenseMap.h>
#include <llvm/ADT/StringMap.h>
#include <llvm/Support/Regex.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace coport::tidy {

/// What a blocking call blocks.
enum class block_kind {
  fiber,   ///< the calling fiber (Boost.Fiber's primitives, coport's marked calls)
  token,   ///< the calling fiber, through an Asio operation given a fiber token
  thread,  ///< the whole thread (sleep, join, blocking system calls)
};

const char* to_string(block_kind k);

/// A call in a function's body, as the analysis sees it.
struct call_site {
  const clang::Expr* expr = nullptr;
  clang::SourceLocation loc;                    ///< where a diagnostic points
  const clang::FunctionDecl* callee = nullptr;  ///< null for a call it cannot name
  std::vector<const clang::Expr*> args;
};

/// A call that blocks by itself (a leaf of the call graph).
struct leaf {
  block_kind kind = block_kind::fiber;
  std::string what;     ///< the call: "boost::fibers::mutex::lock", "boost::asio::async_read"
  std::string token;    ///< for block_kind::token: the token's type
  std::string instead;  ///< what ported code uses

  /// "boost::fibers::mutex::lock", "boost::asio::async_read with coport::bridge::use_fiber_t"
  std::string text() const { return token.empty() ? what : what + " with " + token; }
};

/// One step of a chain: `caller` calls `callee_name` at `loc`.
struct step {
  const clang::FunctionDecl* caller = nullptr;
  clang::SourceLocation loc;
  std::string callee_name;
};

/// How a function blocks fibers: the calls from it to a leaf. steps[0] is
/// in the function asked about, each next step in the callee of the one
/// before, and the last step's callee is the leaf. A chain that ends in a
/// function known only from the program facts continues with the names the
/// facts give (facts_tail, which starts with that function).
struct chain {
  std::vector<step> steps;
  leaf end;
  std::vector<std::string> facts_tail;
  bool from_facts = false;

  /// "first -> h -> boost::fibers::mutex::lock", `first` naming the function
  /// the chain starts in.
  std::string text(const std::string& first) const;
};

/// A cross-world call site (the migration report's vocabulary).
struct cross_world_site {
  std::string kind;  ///< await, run_in_fiber, use_fiber, hosted
  std::string what;
  clang::SourceLocation loc;
};

struct options {
  std::vector<std::string> blocking_patterns;  ///< FiberBlockingFunctions
  std::string program_facts;                   ///< ProgramFacts (a path)
};

/// The program facts file (coport-program-facts/1): functions known to block
/// fibers, by USR, with their chains of names.
struct program_facts {
  std::map<std::string, std::vector<std::string>> chains;
  std::string error;  ///< set when the file could not be read
  static std::shared_ptr<const program_facts> load(const std::string& path);
};

class analysis {
 public:
  analysis(clang::ASTContext& ctx, const options& opts);

  /// Name without template arguments: "boost::fibers::buffered_channel::push".
  static std::string plain_name(const clang::NamedDecl* d);
  /// Name for messages: "kv::store::flush", "(lambda at kv.cpp:12:5)".
  std::string display_name(const clang::FunctionDecl* f) const;
  std::string usr(const clang::Decl* d) const;

  static bool is_coroutine(const clang::FunctionDecl* f);
  bool in_system_header(const clang::Decl* d) const;
  bool in_system_header(clang::SourceLocation loc) const;

  /// The calls written in `f`'s body, in source order; lambdas and local
  /// classes defined in it are not part of it.
  const std::vector<call_site>& calls_of(const clang::FunctionDecl* f);

  /// The leaf this call is, if it blocks by itself (a fiber token among its
  /// arguments, Boost.Fiber's or the thread's blocking calls, a marked or
  /// configured function).
  std::optional<leaf> leaf_of(const call_site& c) const;

  /// Whether calling `f` can block a fiber, and through which calls. Only
  /// for functions the analysis follows into (see follows()).
  const std::optional<chain>& fiber_chain(const clang::FunctionDecl* f);

  /// Whether the analysis looks into `callee`'s body: not coroutines (they
  /// are checked on their own; calling one runs nothing yet), not calls that
  /// run their argument elsewhere (run_in_fiber, co_spawn_hosted,
  /// spawn_fiber), not Boost.Fiber's, Boost.Asio's or coport's internals.
  bool follows(const clang::FunctionDecl* callee) const;
  /// The part of follows() that reads the name: not Boost.Fiber's,
  /// Boost.Asio's or coport's internals.
  static bool follows_name(const clang::FunctionDecl* f);

  /// The cross-world kind of a call ("await", "run_in_fiber", "use_fiber",
  /// "hosted"), if it is one.
  std::optional<cross_world_site> cross_world_of(const call_site& c) const;

  /// A chain for a call that the analysis cannot follow but the program
  /// facts know (a function defined in another translation unit).
  std::optional<chain> facts_chain(const call_site& c) const;

  /// How the callee of `c` blocks fibers: its fiber_chain() when the
  /// analysis follows into its body, else what the program facts know.
  std::optional<chain> chain_through(const call_site& c);

  /// The marker's text, if `f` carries COPORT_FIBER_BLOCKING(_INSTEAD).
  std::optional<std::string> marked(const clang::FunctionDecl* f) const;

  clang::ASTContext& context() { return ctx_; }
  const std::string& facts_error() const;

 private:
  std::optional<std::string> annotation(const clang::Decl* d, llvm::StringRef name) const;
  std::optional<std::string> token_type(const clang::Expr* arg) const;
  bool matches_option(const std::string& name) const;

  clang::ASTContext& ctx_;
  std::vector<std::unique_ptr<llvm::Regex>> patterns_;
  std::shared_ptr<const program_facts> facts_;
  llvm::DenseMap<const clang::FunctionDecl*, std::vector<call_site>> calls_;
  llvm::DenseMap<const clang::FunctionDecl*, std::optional<chain>> chains_;
  llvm::DenseMap<const clang::FunctionDecl*, bool> in_progress_;
};

}  // namespace coport::tidy

#endif

// The coport-* checks. Each one keeps its own analysis of the translation
// unit (analysis.hpp) and reports from it.
#ifndef COPORT_TIDY_CHECKS_HPP
#define COPORT_TIDY_CHECKS_HPP

#include "analysis.hpp"
#include "rewrite.hpp"

#include <clang-tidy/ClangTidyCheck.h>

#include <set>
#include <utility>

namespace coport::tidy {

/// The `;`-separated items of an option, trimmed, empty ones dropped.
std::vector<std::string> split_list(llvm::StringRef text);

/// Shared by the checks: the options, the analysis of the current
/// translation unit, the functions already looked at, and diagnostics
/// already given (a template's pattern and each instantiation point at the
/// same call).
class check_base : public clang::tidy::ClangTidyCheck {
 public:
  check_base(llvm::StringRef name, clang::tidy::ClangTidyContext* ctx);
  void storeOptions(clang::tidy::ClangTidyOptions::OptionMap& opts) override;
  bool isLanguageVersionSupported(const clang::LangOptions& lo) const override { return lo.CPlusPlus; }

 protected:
  analysis& analysis_for(clang::ASTContext& ctx);
  /// The functions a match stands for: a function definition, or a
  /// lambda's call operator and, for a generic lambda, its instantiations.
  std::vector<const clang::FunctionDecl*> functions_of(const clang::ast_matchers::MatchFinder::MatchResult& r);
  bool first_look(const clang::FunctionDecl* f) { return seen_.insert(f).second; }
  /// Reports once per location and text.
  bool once(clang::SourceLocation loc, const std::string& text);
  void report_chain_notes(const chain& ch);
  /// "WHO calls 'G', which blocks fibers: G -> ... -> Q", with a note per
  /// step, when the callee of `c` blocks fibers.
  void report_through(analysis& a, const call_site& c, const std::string& who, const rewriter* fixes = nullptr);
  /// The fix-its of a certain rewrite, on diagnostic `d`.
  static void add_fixes(clang::DiagnosticBuilder& d, const std::optional<rewrite>& fix);
  void register_function_matchers(clang::ast_matchers::MatchFinder* finder);

  std::string patterns_text_;
  std::string program_facts_;
  std::string name_;

 private:
  std::unique_ptr<analysis> analysis_;
  clang::ASTContext* ctx_ = nullptr;
  std::set<const clang::FunctionDecl*> seen_;
  std::set<std::pair<unsigned, std::string>> reported_;
  bool facts_error_reported_ = false;
};

/// coport-fiber-blocking-in-coroutine
class fiber_blocking_in_coroutine : public check_base {
 public:
  using check_base::check_base;
  void registerMatchers(clang::ast_matchers::MatchFinder* finder) override;
  void check(const clang::ast_matchers::MatchFinder::MatchResult& r) override;

 private:
  void report_left_in_fiber(analysis& a, const call_site& c, const std::string& coro, const rewriter& fixes);
};

/// coport-blocking-on-loop
class blocking_on_loop : public check_base {
 public:
  using check_base::check_base;
  void registerMatchers(clang::ast_matchers::MatchFinder* finder) override;
  void check(const clang::ast_matchers::MatchFinder::MatchResult& r) override;

 private:
  void check_handler(analysis& a, const clang::FunctionDecl* handler, const std::string& asio_function);
  void check_spawn(analysis& a, const clang::CallExpr* call, const std::string& spawner);
  std::optional<std::string> body_blocks(analysis& a, const clang::FunctionDecl* coro);
  clang::ASTContext* r_context_ = nullptr;
};

/// coport-inventory-facts: writes the facts of the translation unit for
/// coport-inventory; reports nothing.
class inventory_facts : public clang::tidy::ClangTidyCheck {
 public:
  inventory_facts(llvm::StringRef name, clang::tidy::ClangTidyContext* ctx);
  void storeOptions(clang::tidy::ClangTidyOptions::OptionMap& opts) override;
  bool isLanguageVersionSupported(const clang::LangOptions& lo) const override { return lo.CPlusPlus; }
  void registerMatchers(clang::ast_matchers::MatchFinder* finder) override;
  void check(const clang::ast_matchers::MatchFinder::MatchResult& r) override;
  void onEndOfTranslationUnit() override;

 private:
  std::string directory_;
  std::string patterns_text_;
  std::unique_ptr<analysis> analysis_;
  clang::ASTContext* ctx_ = nullptr;
  std::vector<const clang::FunctionDecl*> functions_;
  std::set<const clang::FunctionDecl*> seen_;
};

}  // namespace coport::tidy

#endif

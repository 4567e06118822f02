// coport-port: writes the coroutine form of named legacy functions next to
// them, as fix-its, and registers the two forms as a migration point where
// the legacy form was one. Driven by tools/port/coport_port.py, which runs
// this check alone and turns its fixes into a patch or an in-place edit.
//
// Options:
//   Functions        `;`-separated names to port (qualified, or the last
//                    parts of a qualified name: `incr_fiber`, `store::get`)
//   CoroutineForms   `;`-separated `legacy=coroutine` pairs of qualified
//                    names whose coroutine forms exist already (besides
//                    those the program's migration points show: a point
//                    whose legacy form calls f and ported form calls g)
//   Points           `;`-separated names of migration points (and RPC
//                    methods) whose legacy form, a lambda, is to be ported:
//                    `migration::point` constructed with `.legacy = [..]{..}`
//                    and no ported form, or `endpoint::add("name", params,
//                    [..]{..})` with a plain lambda
//   FiberBlockingFunctions, ProgramFacts: as for the other coport-* checks
//
// One warning per function named, at its name:
//   ported 'F' as 'G'
//   ported 'F' as 'G', with N call(s) left in run_in_fiber: Q1, Q2
//   not ported 'F': REASON
// (for a point's lambda, F is 'P [legacy]' and G 'P [ported]')
// and one per migration point whose legacy form calls a ported function:
//   registered 'G' as the ported form of migration point 'P'
//   not registered 'G' with migration point 'P': REASON
#ifndef COPORT_TIDY_PORT_HPP
#define COPORT_TIDY_PORT_HPP

#include "checks.hpp"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace coport::tidy {

class port_check : public check_base {
 public:
  port_check(llvm::StringRef name, clang::tidy::ClangTidyContext* ctx);
  void storeOptions(clang::tidy::ClangTidyOptions::OptionMap& opts) override;
  void registerMatchers(clang::ast_matchers::MatchFinder* finder) override;
  void check(const clang::ast_matchers::MatchFinder::MatchResult& r) override;
  void onEndOfTranslationUnit() override;

  /// A name as coport-port matches and prints it: qualified, without
  /// anonymous namespaces.
  static std::string port_name(const clang::NamedDecl* d);

 private:
  struct ported;
  bool wanted(const clang::FunctionDecl* f) const;
  /// Writes `f`'s coroutine form (with `emit`; without, only says whether
  /// it can be written), awaiting the coroutine forms `names` gives.
  bool port(analysis& a, const clang::FunctionDecl* f, const std::map<const clang::FunctionDecl*, std::string>& names,
            bool emit);
  /// `f`'s body as its coroutine form's: the calls rewritten, `return`
  /// made `co_return`; nothing, with `reason`, when it cannot be.
  std::optional<std::string> coroutine_body(analysis& a, const clang::FunctionDecl* f, const clang::CompoundStmt* body,
                                            const std::map<const clang::FunctionDecl*, std::string>& names,
                                            std::vector<std::string>& left, std::string& reason);
  void register_point(analysis& a, const clang::InitListExpr* forms,
                      const std::map<const clang::FunctionDecl*, std::string>& names);

  /// A point's legacy lambda as a coroutine lambda, or nothing with
  /// `reason`.
  std::optional<std::string> port_lambda(analysis& a, const clang::LambdaExpr* l,
                                         const std::map<const clang::FunctionDecl*, std::string>& names,
                                         std::vector<std::string>& left, std::string& reason);
  void port_point(analysis& a, const clang::InitListExpr* forms, const std::string& point,
                  const std::map<const clang::FunctionDecl*, std::string>& names);
  void port_method(analysis& a, const clang::CXXMemberCallExpr* add, const std::string& point,
                   const std::map<const clang::FunctionDecl*, std::string>& names);
  void report_lambda(const std::string& point, clang::SourceLocation where, const std::optional<std::string>& ported,
                     const std::vector<std::string>& left, const std::string& reason,
                     const std::optional<clang::FixItHint>& fix);

  std::string functions_text_;
  std::string forms_text_;
  std::string points_text_;
  std::vector<std::string> point_names_;
  std::vector<const clang::CXXMemberCallExpr*> methods_;
  /// Coroutine forms known from migration points with both forms.
  std::map<const clang::FunctionDecl*, std::string> known_;
  std::vector<std::string> functions_;
  std::map<std::string, std::string> forms_;
  clang::ASTContext* ctx_ = nullptr;
  std::vector<const clang::FunctionDecl*> found_;
  std::vector<const clang::InitListExpr*> points_;
};

}  // namespace coport::tidy

#endif

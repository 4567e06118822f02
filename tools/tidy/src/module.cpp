// The coport-* clang-tidy module. Loaded into Debian's clang-tidy-16:
//
//   clang-tidy-16 --load=libcoport_tidy.so --checks='-*,coport-*' -p build src/x.cpp
//
// coport-fiber-blocking-in-coroutine  coroutines that reach fiber-blocking code
// coport-blocking-on-loop             Asio handlers that block fibers, and
//                                     coroutines that block their thread
// coport-inventory-facts              the facts coport-inventory joins
// coport-port                         writes the coroutine forms of named
//                                     legacy functions (tools/port drives it)
#include "checks.hpp"
#include "port.hpp"

#include <clang-tidy/ClangTidyModule.h>
#include <clang-tidy/ClangTidyModuleRegistry.h>

namespace coport::tidy {
namespace {

class module : public clang::tidy::ClangTidyModule {
 public:
  void addCheckFactories(clang::tidy::ClangTidyCheckFactories& f) override {
    f.registerCheck<fiber_blocking_in_coroutine>("coport-fiber-blocking-in-coroutine");
    f.registerCheck<blocking_on_loop>("coport-blocking-on-loop");
    f.registerCheck<inventory_facts>("coport-inventory-facts");
    f.registerCheck<port_check>("coport-port");
  }
};

}  // namespace
}  // namespace coport::tidy

static clang::tidy::ClangTidyModuleRegistry::Add<coport::tidy::module> coport_module(
    "coport-module", "Checks that find the fiber-blocking code coroutines and Asio handlers still reach.");

// Linked with coport::rabbit and calling nothing of it: the rabbit driver
// must come with the library alone, however the linker treats an object
// nothing refers to.
#include <coport/messaging/transport/transport.hpp>

#include "driver_test_support.hpp"

using namespace coport::messaging;
using Catch::Matchers::Contains;

TEST_CASE("a program that links coport::rabbit opens rabbit:// URLs with the rabbit driver", "[drivers]") {
  // Only the rabbit driver reads the query: its own check names the typo.
  CHECK_THAT(refusal("rabbit://u:secret@h/?hearbeat=5"),
             Contains("unknown parameter 'hearbeat'") && !Contains("secret") && !Contains("coport::rabbit"));
  // A well-formed URL opens; connecting is the driver thread's business
  // (nothing listens on port 1, and nothing here waits for it).
  const auto t = transport::create("rabbit://u:secret@127.0.0.1:1/?connect_timeout=1");
  REQUIRE(t);
  CHECK(t->describe() == "rabbit://u:****@127.0.0.1:1/?connect_timeout=1");
}

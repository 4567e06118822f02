// Linked with coport::messaging alone: rabbit:// is refused when the
// transport is created, with a message that names the library to link.
#include <coport/messaging/transport/transport.hpp>

#include "driver_test_support.hpp"

using Catch::Matchers::Contains;

TEST_CASE("a program without coport::rabbit is told at transport creation that rabbit:// needs it", "[drivers]") {
  CHECK_THAT(refusal("rabbit://u:secret@h:5672/"),
             Contains("rabbit:// needs coport::rabbit") && Contains("find_package(coport COMPONENTS rabbit)") &&
                 Contains("rabbit://u:****@h:5672/") && !Contains("secret"));
  // The driver is missing, not the URL wrong: a malformed URL gets the same answer.
  CHECK_THAT(refusal("rabbit://u:p@h/?hearbeat=5"), Contains("needs coport::rabbit"));
}

TEST_CASE("a scheme no coport library serves is refused as unknown", "[drivers]") {
  CHECK_THAT(refusal("nosuch://u:secret@h/"),
             Contains("no transport driver for scheme 'nosuch'") && !Contains("secret"));
}

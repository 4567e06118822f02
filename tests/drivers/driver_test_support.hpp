#ifndef COPORT_TESTS_DRIVERS_DRIVER_TEST_SUPPORT_HPP
#define COPORT_TESTS_DRIVERS_DRIVER_TEST_SUPPORT_HPP

#include <coport/messaging/wire/errors.hpp>
#include <coport/messaging/transport/transport.hpp>

#include <catch2/catch.hpp>

#include <string>

/// The message of the invalid_url transport::create throws for `url`, which
/// it must refuse (the test fails otherwise).
inline std::string refusal(const std::string& url) {
  using namespace coport::messaging;
  try {
    (void)transport::create(url);
  } catch (const invalid_url& e) {
    CHECK(e.code() == errc::invalid_url);
    return e.what();
  }
  FAIL("transport::create(\"" << url << "\") did not throw invalid_url");
  return {};
}

#endif

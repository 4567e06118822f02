#include <coport/migration/policy.hpp>

#include <charconv>

namespace coport::migration {

namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "coport.migration"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::invalid_policy: return "invalid migration policy";
      case errc::unknown_point: return "no such migration point";
      case errc::duplicate_point: return "migration point declared twice";
    }
    return "unknown migration error";
  }
};

}  // namespace

const boost::system::error_category& migration_category() noexcept {
  static const category c;
  return c;
}

std::string_view to_string(form_kind k) noexcept { return k == form_kind::fiber ? "fiber" : "coroutine"; }

policy policy::canary(unsigned percent) {
  if (percent > 100) {
    throw invalid_policy("canary share must be 0..100 %, got " + std::to_string(percent));
  }
  return {kind::canary, percent};
}

policy policy::parse(std::string_view text) {
  if (text == "legacy") return legacy();
  if (text == "ported") return ported();
  if (text == "shadow") return shadow();
  if (text.starts_with("canary:")) {
    std::string_view n = text.substr(7);
    if (n.ends_with('%')) n.remove_suffix(1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), value);
    if (ec != std::errc{} || end != n.data() + n.size() || n.empty()) {
      throw invalid_policy("canary policy '" + std::string(text) + "': expected canary:N with N in 0..100");
    }
    return canary(value);
  }
  throw invalid_policy("unknown policy '" + std::string(text) +
                       "': expected legacy, ported, canary:N (0..100) or shadow");
}

std::string policy::to_string() const {
  switch (what) {
    case kind::legacy: return "legacy";
    case kind::ported: return "ported";
    case kind::canary: return "canary:" + std::to_string(percent);
    case kind::shadow: return "shadow";
  }
  return "?";
}

void check_fits(std::string_view name, bool has_legacy, bool has_ported, policy p) {
  if (p.what == policy::kind::canary && p.percent > 100) (void)policy::canary(p.percent);
  const bool needs_legacy = p.what != policy::kind::ported;
  const bool needs_ported = p.what != policy::kind::legacy;
  if (needs_legacy && !has_legacy) {
    throw invalid_policy("policy " + p.to_string() + " for " + std::string(name) +
                         " needs its legacy (fiber) form, which is not registered");
  }
  if (needs_ported && !has_ported) {
    throw invalid_policy("policy " + p.to_string() + " for " + std::string(name) +
                         " needs its ported (coroutine) form, which is not registered");
  }
}

}  // namespace coport::migration

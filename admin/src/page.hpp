#ifndef COPORT_ADMIN_SRC_PAGE_HPP
#define COPORT_ADMIN_SRC_PAGE_HPP

#include <string_view>

namespace coport::admin::detail {

/// GET /migration: assets/migration.html (page.cpp, generated).
extern const std::string_view migration_page;

}  // namespace coport::admin::detail

#endif

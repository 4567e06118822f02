# coport_example_cli: what every example program and coport-demo link to
# for their command line (cli.hpp): CLI11 (Debian's libcli11-dev, header
# only) and COPORT_VERSION, the version --version prints.
find_package(CLI11 CONFIG REQUIRED)
add_library(coport_example_cli INTERFACE)
target_link_libraries(coport_example_cli INTERFACE CLI11::CLI11)
target_compile_definitions(coport_example_cli INTERFACE COPORT_VERSION="${PROJECT_VERSION}")

# The command line of every example program and of coport-demo (cli.hpp):
# --help prints the usage line and the options on stdout and exits 0,
# --version prints "<program> <project version>" and exits 0, and a command
# line a program cannot use gets, on stderr and nothing else,
#
#   <program>: <message>
#   Run with --help for more information.
#
# with exit status 64. Included by examples/CMakeLists.txt (tests on);
# coport_expect_test (cmake/CoportTargets.cmake) checks status and output.

string(REPLACE "." "[.]" cli_version "${PROJECT_VERSION}")
set(cli_memory --transport memory:// --topic t)

# cli_help_and_version(<test prefix> <program> LABELS <labels> HELP <regex>...):
# <prefix>_help (the usage line, then every HELP pattern, on stdout) and
# <prefix>_version.
function(cli_help_and_version prefix program)
  cmake_parse_arguments(C "" "" "LABELS;HELP" ${ARGN})
  coport_expect_test(NAME ${prefix}_help
    STDOUT "^usage: ${program}[ \\n]" ${C_HELP}
    STDERR "^$"
    NOT_OUTPUT "[^\\n]{81}"  # lines of at most 80 columns
    COMMAND $<TARGET_FILE:${program}> --help)
  coport_expect_test(NAME ${prefix}_version
    STDOUT "^${program} ${cli_version}\\n$"
    STDERR "^$"
    COMMAND $<TARGET_FILE:${program}> --version)
  set_tests_properties(${prefix}_help ${prefix}_version PROPERTIES LABELS "${C_LABELS}" TIMEOUT 60)
endfunction()

# cli_refused(<test name> <program> LABELS <labels> MESSAGE <regex>
#             [NOT_OUTPUT <regex>] ARGS <args>...): the program refuses the
# command line ARGS with a message matching MESSAGE, in the common form.
function(cli_refused name program)
  cmake_parse_arguments(C "" "MESSAGE" "LABELS;NOT_OUTPUT;ARGS" ${ARGN})
  set(not_output)
  if(C_NOT_OUTPUT)
    set(not_output NOT_OUTPUT ${C_NOT_OUTPUT})
  endif()
  coport_expect_test(NAME ${name} EXIT 64
    STDOUT "^$"
    STDERR "^${program}: [^\\n]*${C_MESSAGE}[^\\n]*\\nRun with --help for more information[.]\\n$"
    ${not_output}
    COMMAND $<TARGET_FILE:${program}> ${C_ARGS})
  set_tests_properties(${name} PROPERTIES LABELS "${C_LABELS}" TIMEOUT 60)
endfunction()

# ---- coport-example-server, -client, -listener
set(cli_labels "example;rabbit-examples;cli")

# --help lists what the migration guide sends readers to.
cli_help_and_version(example_server coport-example-server LABELS ${cli_labels}
  HELP "^usage: coport-example-server --transport URL --topic TOPIC \\[--server NAME\\]"
       "--policy METHOD=POLICY.*--admin .*--admin-token TOKEN")
cli_refused(example_server_bad_command_line coport-example-server LABELS ${cli_labels}
  MESSAGE "--no-such-option" ARGS ${cli_memory} --no-such-option)
cli_refused(example_server_no_transport coport-example-server LABELS ${cli_labels}
  MESSAGE "--transport is required" ARGS --topic t)
cli_refused(example_server_bad_threads coport-example-server LABELS ${cli_labels}
  MESSAGE "--threads: expects a whole number of at least 1, got '0'" ARGS ${cli_memory} --threads 0)
cli_refused(example_server_bad_executor coport-example-server LABELS ${cli_labels}
  MESSAGE "--executor: expects fiber or coro, got 'threads'" ARGS ${cli_memory} --executor threads)
cli_refused(example_server_bad_topic coport-example-server LABELS ${cli_labels}
  MESSAGE "--topic: name 'a/b' may hold only letters" ARGS --transport memory:// --topic a/b)
cli_refused(example_server_bad_policy_syntax coport-example-server LABELS ${cli_labels}
  MESSAGE "--policy: expects METHOD=POLICY, got 'echo'" ARGS ${cli_memory} --policy echo)
# A URL in the wrong place is quoted with its password masked.
cli_refused(example_server_bad_command_line_masks_password coport-example-server LABELS ${cli_labels}
  MESSAGE "rabbit://u:[*]+@host/" NOT_OUTPUT "secret" ARGS ${cli_memory} rabbit://u:secret@host/)

cli_help_and_version(example_client coport-example-client LABELS ${cli_labels}
  HELP "^usage: coport-example-client --transport URL --topic TOPIC \\[--server NAME\\]\\s+\\[--fanout\\]"
       "call METHOD JSON_ARGS.*notify \\[--priority P\\] \\[--publisher ID\\] EVENT_TYPE JSON_PAYLOAD"
       "bench \\[--concurrency N\\] \\[--seconds S\\]"
       "report \\[--json\\].*set-policy METHOD POLICY.*--admin-token")
cli_refused(example_client_bad_command_line coport-example-client LABELS ${cli_labels}
  MESSAGE "--no-such-option" ARGS ${cli_memory} --no-such-option call echo {})
cli_refused(example_client_no_command coport-example-client LABELS ${cli_labels}
  MESSAGE "no command: call, cast" ARGS ${cli_memory})
cli_refused(example_client_unknown_command coport-example-client LABELS ${cli_labels}
  MESSAGE "not expected: frobnicate" ARGS ${cli_memory} frobnicate)
cli_refused(example_client_call_without_args coport-example-client LABELS ${cli_labels}
  MESSAGE "JSON_ARGS is required" ARGS ${cli_memory} call echo)
cli_refused(example_client_bad_priority coport-example-client LABELS ${cli_labels}
  MESSAGE "--priority: no priority 'loud'" ARGS ${cli_memory} notify --priority loud e {})
cli_refused(example_client_bad_timeout coport-example-client LABELS ${cli_labels}
  MESSAGE "--timeout: expects a number of seconds above 0, got '0'" ARGS ${cli_memory} --timeout 0 call echo {})
cli_refused(example_client_bad_bench_seconds coport-example-client LABELS ${cli_labels}
  MESSAGE "--seconds: expects a number of seconds above 0[.]5, got '0[.]5'" ARGS ${cli_memory} bench --seconds 0.5)
# --version V is the version a call asks for.
cli_refused(example_client_bad_call_version coport-example-client LABELS ${cli_labels}
  MESSAGE "--version: " ARGS ${cli_memory} --version x.y call echo {})

cli_help_and_version(example_listener coport-example-listener LABELS ${cli_labels}
  HELP "^usage: coport-example-listener --transport URL --topic TOPIC \\[--pool NAME\\]"
       "--handle-ms MS.*--max-in-flight N")
cli_refused(example_listener_bad_command_line coport-example-listener LABELS ${cli_labels}
  MESSAGE "--no-such-option" ARGS ${cli_memory} --no-such-option)
cli_refused(example_listener_bad_count coport-example-listener LABELS ${cli_labels}
  MESSAGE "--count: expects a whole number of at least 1, got 'many'" ARGS ${cli_memory} --count many)
cli_refused(example_listener_bad_pool coport-example-listener LABELS ${cli_labels}
  MESSAGE "--pool: name 'a b' may hold only letters" ARGS ${cli_memory} --pool "a b")

# ---- the other programs
set(cli_labels "example;executors;cli")
cli_help_and_version(example_executor_switch coport-executor-switch LABELS ${cli_labels}
  HELP "^usage: coport-executor-switch \\[--with-legacy\\] \\[EXECUTOR\\]\\n")
cli_refused(example_executor_switch_bad_command_line coport-executor-switch LABELS ${cli_labels}
  MESSAGE "EXECUTOR: expects fiber or coro, got 'threads'" ARGS threads)
if(NOT COPORT_WITH_FIBERS)
  cli_refused(example_executor_switch_without_fibers coport-executor-switch LABELS ${cli_labels}
    MESSAGE "no fibers" ARGS fiber)
endif()

set(cli_labels "example;messaging;cli")
cli_help_and_version(example_messaging_hello coport-messaging-hello LABELS ${cli_labels}
  HELP "^usage: coport-messaging-hello\\n")
cli_refused(example_messaging_hello_bad_command_line coport-messaging-hello LABELS ${cli_labels}
  MESSAGE "not expected: extra" ARGS extra)

if(COPORT_WITH_FIBERS)
  set(cli_labels "example;cli")
  cli_help_and_version(example_bridge_tour coport-bridge-tour LABELS ${cli_labels}
    HELP "^usage: coport-bridge-tour \\[ORDERS\\]\\n")
  cli_refused(example_bridge_tour_bad_command_line coport-bridge-tour LABELS ${cli_labels}
    MESSAGE "ORDERS: expects a whole number of at least 4, got '2'" ARGS 2)

  # coport-demo (demo/, added after this file; built with fibers only).
  set(cli_labels "example;demo;cli")
  cli_help_and_version(example_demo coport-demo LABELS ${cli_labels}
    HELP "^usage: coport-demo \\[--calls N\\] \\[--notifications N\\] \\[--transport URL\\] \\[--phases\\]"
         "--calls N .*--phases .*--json .*--verbose ")
  cli_refused(example_demo_bad_command_line coport-demo LABELS ${cli_labels}
    MESSAGE "--no-such-option" ARGS --no-such-option)
  cli_refused(example_demo_bad_calls coport-demo LABELS ${cli_labels}
    MESSAGE "--calls: expects a whole number of at least 1, got '0'" ARGS --calls 0)
  cli_refused(example_demo_missing_value coport-demo LABELS ${cli_labels}
    MESSAGE "--transport: .*missing" ARGS --transport)
  cli_refused(example_demo_bad_http_address coport-demo LABELS ${cli_labels}
    MESSAGE "--http: expects HOST:PORT with an IP address \\(IPv6 in brackets\\) and a port up to 65535, got 'localhost:80'"
    ARGS --http localhost:80)
  cli_refused(example_demo_http_with_phases coport-demo LABELS ${cli_labels}
    MESSAGE "--http serves the default run, not --phases or --json" ARGS --http 127.0.0.1:0 --phases)
  cli_refused(example_demo_bad_command_line_masks_password coport-demo LABELS ${cli_labels}
    MESSAGE "rabbit://u:[*]+@host/" NOT_OUTPUT "secret" ARGS rabbit://u:secret@host/)
endif()

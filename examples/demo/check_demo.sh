#!/bin/sh
# Runs coport-demo and checks what it prints (ctest runs it, see
# CMakeLists.txt):
#
#   check_demo.sh DEMO default            the default run: the mixed release
#   check_demo.sh DEMO phases             --phases: the four phases
#   check_demo.sh DEMO json               --json: the report as JSON
#   check_demo.sh DEMO rabbit             against $COPORT_TEST_RABBIT_URL,
#                                         its password never printed
# Its command line (--help, --version, usage errors): ../cli_tests.cmake.
demo=$1
mode=$2
out=$(mktemp) && err=$(mktemp) || exit 1
trap 'rm -f "$out" "$err"' EXIT

fail() {
  echo "FAIL ($mode): $*"
  echo "--- stdout:"
  cat "$out"
  echo "--- stderr (last lines):"
  tail -n 20 "$err"
  exit 1
}
# run STATUS ARGS...: runs the demo, which must exit with STATUS. The stall
# detector is off: a stall is wall-clock time, and on a loaded machine (the
# sanitizer trees, two tests at once) the OS can hold the loop's thread past
# 25 ms in the middle of any handler, which would add a reason to a verdict
# checked here. The detector has its own tests (tests/bridge, the executors'
# strict mode); here every checked figure is the same on any machine.
run() {
  want=$1
  shift
  "$demo" --stall-threshold 0 "$@" >"$out" 2>"$err"
  status=$?
  [ "$status" -eq "$want" ] || fail "exit status $status, expected $want"
}
# expect ERE: a line of stdout matches.
expect() {
  grep -Eq -- "$1" "$out" || fail "no line of stdout matches: $1"
}
# expect_next ERE1 ERE2: the line after the first line of stdout matching
# ERE1 matches ERE2 (a row's second form).
expect_next() {
  grep -EA1 -- "$1" "$out" | sed -n 2p | grep -Eq -- "$2" || fail "the line after '$1' does not match: $2"
}
# expect_count N ERE: exactly N lines of stdout match.
expect_count() {
  n=$(grep -Ec -- "$2" "$out")
  [ "$n" -eq "$1" ] || fail "$n lines of stdout match '$2', expected $1"
}
# The REST API's line, and what the traffic checked of it.
expect_rest_checked() {
  expect '^rest api: http://127\.0\.0\.1:[1-9][0-9]*/v2/meters/'
  expect '^checked: .* REST queries answered as expected, a malformed request refused with 400, an unknown route with 404$'
}
# The report of the mixed release (phase 2, or the default run): the RPC
# methods, then the service's other migration points (notifications, the
# REST routes), one verdict for all.
expect_mixed_report() {
  expect '^migration report \(fiber_executor \+ migration points\)$'
  for m in record resources stats total usage; do
    expect "^metering\\.$m "
  done
  expect '^metering\.record +both +canary:25 +legacy +fiber +[0-9]+ +0 '
  expect '^metering\.resources +fiber +legacy +legacy +fiber +300 +0 '
  # Shadow found differences, and names the calls' arguments.
  expect '^metering\.stats +both +shadow +legacy +fiber +300 +0 .* [1-9][0-9]*/300 differ$'
  expect '^  metering\.stats \{"meter":"(disk\.write|network\.out)"\}$'
  # usage's ported form runs hosted and still blocks fibers: implicit yields.
  expect '^ +ported +hosted +300 +0 .* [1-9][0-9]* +[0-9]+ *$'
  # Notifications are stored by the ported form.
  expect '^notifications\.usage +both +ported +legacy +fiber +0 +0 '
  expect_next '^notifications\.usage ' '^ +ported +coroutine +[1-9][0-9]* +0 '
  # The REST routes: legacy only, ported only, shadow (which finds the
  # ported form right: every call compared, none differ), canary (both
  # forms used).
  expect '^rest\.resources +fiber +legacy +legacy +fiber +[1-9][0-9]* +0 '
  expect '^rest\.statistics +both +shadow +legacy +fiber +([1-9][0-9]*) +0 .* 0/\1 differ$'
  expect_next '^rest\.statistics ' '^ +ported +coroutine +[1-9][0-9]* +0 '
  expect '^rest\.total +coroutine +ported +ported +coroutine +[1-9][0-9]* +0 '
  expect '^rest\.usage +both +canary:50 +legacy +fiber +[1-9][0-9]* +0 '
  expect_next '^rest\.usage ' '^ +ported +coroutine +[1-9][0-9]* +0 '
  expect '^verdict: not ready for coro_executor: 8 reason'
  expect '^  - 1 method\(s\) have only a fiber form: metering\.resources$'
  expect '^  - 1 migration point\(s\) have only a fiber form: rest\.resources$'
  expect '^  - metering\.record is served under policy canary:25'
  expect '^  - rest\.statistics is served under policy shadow, not ported$'
  expect '^  - rest\.usage is served under policy canary:50, not ported$'
  expect '^  - metering\.usage: .*implicit yields'
  expect '^  - metering\.stats: [1-9][0-9]* of 300 shadow call\(s\) answered differently$'
}

case $mode in
  default)
    run 0
    expect '^== coport-demo: the metering service half-way through its port \(fiber_executor, memory://\) ==$'
    expect '^checked: 3000 calls answered as expected'
    expect '^checked: .*; 240 REST queries answered as expected'
    expect_rest_checked
    expect_mixed_report
    grep -q 'calls 3000/3000, notifications 500/500, rest 240/240' "$err" || fail "no final progress line on stderr"
    ;;
  phases)
    run 0 --phases --calls 1500 --notifications 300
    expect '^== phase 1/4: all legacy \(fiber_executor\) ==$'
    expect '^== phase 2/4: mixed \(fiber_executor\) ==$'
    expect '^== phase 3/4: all ported \(fiber_executor\) ==$'
    expect '^== phase 4/4: no fibers \(coro_executor\) ==$'
    expect_count 4 '^checked: 1500 calls answered as expected'
    # The REST API is served in the phases on fiber_executor (its points
    # need a coport runtime).
    expect_count 3 '^rest api: '
    expect_count 3 '^checked: .*; 120 REST queries answered as expected'
    expect '^  - 5 method\(s\) have only a fiber form: metering\.record, metering\.resources, metering\.stats, metering\.total, metering\.usage$'
    expect '^  - 5 migration point\(s\) have only a fiber form: notifications\.usage, rest\.resources, rest\.statistics, rest\.total, rest\.usage$'
    expect '^metering\.stats +both +shadow .* [1-9][0-9]*/150 differ$'
    expect '^rest\.statistics +both +shadow .* 0/30 differ$'
    expect '^half-way through the queries: not ready for coro_executor: 4 reason'
    expect '^metering\.stats +both +ported .* 0/75 differ$'
    expect '^rest\.statistics +both +ported .* 0/15 differ$'
    # Phase 3 ends ready, and phase 4 is served by coro_executor, ready.
    expect_count 2 '^verdict: ready for coro_executor$'
    last_report=$(grep -E '^migration report' "$out" | tail -n 1)
    [ "$last_report" = "migration report (coro_executor)" ] || fail "last report: '$last_report'"
    last_verdict=$(grep -E '^verdict:' "$out" | tail -n 1)
    [ "$last_verdict" = "verdict: ready for coro_executor" ] || fail "final verdict: '$last_verdict'"
    ;;
  json)
    run 0 --json --calls 500 --notifications 100
    expect_count 1 '.'
    expect '^\{"executor":"fiber_executor \+ migration points","ready":false,"verdict":"not ready for coro_executor: 8 reason\(s\)"'
    expect '"method":"stats","kinds":"both","policy":"shadow"'
    expect '"shadow":\{"calls":50,"mismatches":[1-9][0-9]*\}'
    expect '"mode":"hosted","calls":50,"errors":0,.*"implicit_yields":[1-9]'
    expect '"method":"rest\.statistics","kinds":"both","policy":"shadow".*"shadow":\{"calls":10,"mismatches":0\},"unit":"point"'
    expect '"method":"rest\.usage","kinds":"both","policy":"canary:50","forms":\[\{"kind":"fiber","mode":"fiber","calls":[1-9]'
    ;;
  rabbit)
    [ -n "$COPORT_TEST_RABBIT_URL" ] || fail "COPORT_TEST_RABBIT_URL is not set"
    run 0 --transport "$COPORT_TEST_RABBIT_URL" --calls 1000 --notifications 200
    expect '^== coport-demo: the metering service half-way through its port \(fiber_executor, rabbit://[^:]+:[*]+@'
    expect '^checked: 1000 calls answered as expected'
    password=$(printf '%s\n' "$COPORT_TEST_RABBIT_URL" | sed -n 's|^rabbit://[^:/@]*:\([^@]*\)@.*|\1|p')
    if [ -n "$password" ] && grep -qF -- "$password" "$out" "$err"; then
      fail "the broker's password was printed"
    fi
    ;;
  *)
    echo "usage: check_demo.sh DEMO default|phases|json|rabbit"
    exit 2
    ;;
esac
echo "coport-demo $mode: as expected"

// coport-bench's RabbitMQ figures: RPC over a private broker, coport
// (coport-example-server and -client) against oslo.messaging and against
// rabbitmq-c alone (coport-bench-amqp), and with --rabbit-cluster once more
// on a private three-node cluster with quorum queues, all measured by
// bench/rabbit_bench.py, whose lines join the results as "external" ones.

#include "results.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value_to.hpp>
#include <boost/system/error_code.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coport_bench {

/// RPC over a RabbitMQ broker against oslo.messaging, by bench/rabbit_bench.py
/// (it starts a private broker; coport-example-server and -client on one
/// side, oslo.messaging's eventlet server and client on the other), and
/// against the floor, rabbitmq-c alone (coport-bench-amqp), when built. Its
/// figures join the results as "external" lines. False, with the reason
/// on stderr, when it cannot run here.
bool run_rabbit(double seconds, bool cluster, report& rep) {
  const char* python = "/usr/bin/python3";
  const char* broker = "/usr/lib/rabbitmq/bin/rabbitmq-server";
  for (const char* needed : {python, broker, COPORT_BENCH_RABBIT_SCRIPT, COPORT_BENCH_SERVER_BIN,
                             COPORT_BENCH_CLIENT_BIN}) {
    if (needed[0] == '\0') {
      std::fprintf(stderr, "rabbit: skipped: built without the example programs (COPORT_BUILD_EXAMPLES)\n");
      return false;
    }
    if (::access(needed, R_OK) != 0) {
      std::fprintf(stderr, "rabbit: skipped: %s is missing (scripts/setup.sh installs the broker)\n", needed);
      return false;
    }
  }
  char out_template[] = "/tmp/coport-bench-rabbit-XXXXXX";
  const int fd = ::mkstemp(out_template);
  if (fd < 0) return false;
  ::close(fd);
  const std::string out = out_template;
  char secs[32];
  std::snprintf(secs, sizeof secs, "%g", seconds);
  // Its progress goes to stderr with ours; its table too (stdout is ours).
  std::string cmd = std::string(python) + " '" + COPORT_BENCH_RABBIT_SCRIPT + "' --server-bin '" +
                    COPORT_BENCH_SERVER_BIN + "' --client-bin '" + COPORT_BENCH_CLIENT_BIN + "' --seconds " + secs +
                    " --concurrency 1,50 --json '" + out + "'";
  const std::string_view amqp_bin = COPORT_BENCH_AMQP_BIN;
  const bool floor = !amqp_bin.empty() && ::access(COPORT_BENCH_AMQP_BIN, X_OK) == 0;
  if (floor) {
    cmd += " --amqp-bin '" + std::string(amqp_bin) + "'";
  } else {
    std::fprintf(stderr, "rabbit: no rabbitmq-c floor: built without the rabbit:// transport (COPORT_WITH_RABBIT)\n");
  }
  if (cluster) cmd += " --cluster";
  cmd += " 1>&2";
  std::fprintf(stderr, "rabbit: coport against oslo.messaging%s over a private broker%s, %s s per figure ...\n",
               floor ? " and rabbitmq-c alone" : "",
               cluster ? ", then on a three-node cluster with quorum queues" : "", secs);
  const int status = std::system(cmd.c_str());
  std::ifstream in(out);
  std::string line;
  std::vector<json::object> lines;
  while (std::getline(in, line)) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    json::object o = std::move(v.as_object());
    o["source"] = "bench/rabbit_bench.py";
    o["kind"] = "external";
    lines.push_back(std::move(o));
  }
  std::remove(out.c_str());
  if (status != 0 || lines.empty()) {
    std::fprintf(stderr, "rabbit: bench/rabbit_bench.py failed (status %d); no broker figures\n", status);
    return false;
  }
  std::printf("\n%-28s %12s  %s\n", "over RabbitMQ", "value", "aim / met");
  for (const auto& o : lines) {
    const json::value* v = o.if_contains("value");
    const json::value* aim = o.if_contains("aim");
    const json::value* met = o.if_contains("met");
    std::printf("%-28s %12.2f  %s\n", json::value_to<std::string>(o.at("name")).c_str(),
                v && v->is_number() ? v->to_number<double>() : std::nan(""),
                aim && aim->is_number() ? (met && met->is_bool() && met->get_bool() ? "met" : "MISSED") : "-");
    rep.lines.push_back(o);
  }
  std::fflush(stdout);
  return true;
}

}  // namespace coport_bench

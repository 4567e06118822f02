#!/usr/bin/env python3
"""install_tidy_tools: the installed coport-inventory, run from the install
prefix with no --plugin, must find the installed coport-* module next to it
(<prefix>/lib/coport/libcoport_tidy.so) and inventory the fully ported stage
of the line service as ready; the installed coport-port, likewise, must port
stage 3's INCR (a patch on stdout); and Debian's clang-tidy must load that
module.

    test_installed.py --prefix PREFIX --clang-tidy clang-tidy-16 -p BUILD
"""
import argparse
import glob
import os
import subprocess
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--prefix", required=True)
    p.add_argument("--clang-tidy", required=True)
    p.add_argument("-p", dest="build", required=True)
    a = p.parse_args()
    problems = []
    inventory = os.path.join(a.prefix, "bin", "coport-inventory")
    port = os.path.join(a.prefix, "bin", "coport-port")
    plugins = glob.glob(os.path.join(a.prefix, "lib*", "coport", "libcoport_tidy.so"))
    for program in (inventory, port):
        if not os.access(program, os.X_OK):
            problems.append(f"{program}: not installed, or not executable")
    if len(plugins) != 1:
        problems.append(f"the coport-* module: expected one <prefix>/lib*/coport/libcoport_tidy.so, found {plugins}")
    if not problems:
        listed = subprocess.run([a.clang_tidy, f"--load={plugins[0]}", "--checks=-*,coport-*", "--list-checks"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for check in ("coport-fiber-blocking-in-coroutine", "coport-blocking-on-loop", "coport-port"):
            if check not in listed.stdout:
                problems.append(f"clang-tidy with the installed module does not list {check}:\n{listed.stdout}")
        r = subprocess.run([inventory, "-p", a.build, "--clang-tidy", a.clang_tidy,
                            "--filter", r"examples/line_service/kv_ported\.cpp$"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        print(r.stdout)
        if r.returncode != 0:
            problems.append(f"the installed coport-inventory exited with {r.returncode}:\n{r.stderr}")
        elif "verdict: ready for removing Boost.Fiber" not in r.stdout:
            problems.append("stage 4 is not 'ready for removing Boost.Fiber' by the installed inventory")
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "examples", "line_service",
                              "kv_mixed.cpp")
        r = subprocess.run([port, "-p", a.build, "--clang-tidy", a.clang_tidy, "--function", "incr_fiber",
                            "--extra-arg=-DCOPORT_KV_LEGACY_POINTS", os.path.normpath(source)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            problems.append(f"the installed coport-port exited with {r.returncode}:\n{r.stderr}")
        elif "+boost::asio::awaitable<long long> incr_coroutine(" not in r.stdout or \
                "registered 'incr_coroutine' as the ported form of migration point 'incr'" not in r.stderr:
            problems.append(f"the installed coport-port did not port incr_fiber:\n{r.stdout}\n{r.stderr}")
    for pr in problems:
        print("FAIL: " + pr)
    if not problems:
        print("install_tidy_tools: the installed inventory and coport-port found the installed module; stage 4 is "
              "ready, stage 3's INCR ported")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

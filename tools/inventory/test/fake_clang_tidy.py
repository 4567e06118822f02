#!/usr/bin/env python3
"""Stands in for clang-tidy in test_merge.py: "writes" the facts of a file by
copying the hand-written facts file whose main_file it is; fails on bad.cpp
as clang-tidy fails on a compiler error."""
import glob
import json
import os
import re
import shutil
import sys

args = sys.argv[1:]
config = next(a for a in args if a.startswith("--config="))
directory = re.search(r"coport-inventory-facts\.Directory: '([^']*)'", config).group(1)
assert any(a.startswith("--load=") for a in args), args
assert "--checks=-*,coport-inventory-facts" in args, args
source = args[-1]
if os.path.basename(source) == "bad.cpp":
    print(f"{source}:3:1: error: unknown type name 'flaot' [clang-diagnostic-error]")
    print("Found compiler error(s).", file=sys.stderr)
    sys.exit(1)
here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "facts")
for path in glob.glob(os.path.join(here, "*.json")):
    with open(path, encoding="utf-8") as f:
        if json.load(f)["main_file"] == source:
            shutil.copy(path, os.path.join(directory, os.path.basename(path)))

"""What the two drivers of the coport-* clang-tidy module share
(tools/inventory/coport_inventory.py, tools/port/coport_port.py): the
compilation database as clang reads it, and finding the module and
clang-tidy. In the source tree it sits in tools/tidy/; installed, in
<prefix>/lib/coport/, beside libcoport_tidy.so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil

PLUGIN = "libcoport_tidy.so"


class UsageError(Exception):
    """Bad usage or unreadable input: exit status 2."""


def load_compile_commands(build_dir: str, hint: str) -> list[dict]:
    """BUILD_DIR/compile_commands.json; `hint` ends the message when it is missing."""
    path = os.path.join(build_dir, "compile_commands.json")
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; configure the tree with CMAKE_EXPORT_COMPILE_COMMANDS=ON "
                         f"(coport's CMakeLists sets it){hint}") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: cannot read it ({e}); configure the tree again with "
                         "CMAKE_EXPORT_COMPILE_COMMANDS=ON") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "file" in e for e in entries):
        raise UsageError(f"{path}: not a compilation database (a list of entries with a \"file\"); "
                         "configure the tree again with CMAKE_EXPORT_COMPILE_COMMANDS=ON")
    return entries


def builds_pch(entry: dict) -> bool:
    """Whether the entry builds g++'s precompiled header (CMake's cmake_pch.hxx.cxx)."""
    return entry["file"].endswith(("cmake_pch.hxx.cxx", "cmake_pch.hxx.cpp"))


def for_clang(entry: dict) -> dict:
    """An entry as clang can read it: g++'s precompiled header (CMake's
    `-include .../cmake_pch.hxx` with a .gch beside it) dropped; clang cannot
    read a .gch, and the sources include what they use without it."""
    args = list(entry["arguments"]) if "arguments" in entry else shlex.split(entry.get("command", ""))
    kept, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "-include" and i + 1 < len(args) and (
                os.path.exists(args[i + 1] + ".gch") or args[i + 1].endswith("cmake_pch.hxx")):
            i += 2
            continue
        if a != "-Winvalid-pch":
            kept.append(a)
        i += 1
    return {"directory": entry.get("directory", ""), "file": entry["file"], "arguments": kept}


def entry_file(entry: dict) -> str:
    """The entry's source file, absolute."""
    f = entry["file"]
    if not os.path.isabs(f):
        f = os.path.join(entry.get("directory", ""), f)
    return os.path.normpath(f)


def check_programs(plugin: str | None, clang_tidy: str) -> str:
    """The module to load: PLUGIN, else the one installed beside this file;
    UsageError when there is none, or no clang-tidy."""
    if not plugin:
        beside = os.path.join(os.path.dirname(os.path.realpath(__file__)), PLUGIN)
        plugin = beside if os.path.isfile(beside) else None
    if not plugin or not os.path.isfile(plugin):
        raise UsageError(f"no coport-* clang-tidy plugin ({plugin or PLUGIN}); give it with --plugin")
    if not (os.path.isfile(clang_tidy) or shutil.which(clang_tidy)):
        raise UsageError(f"{clang_tidy}: no such program; give clang-tidy 16 with --clang-tidy")
    return plugin

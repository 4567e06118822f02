#!/usr/bin/env python3
"""messaging_layers: every #include under messaging/ goes down the folders
of coport::messaging, never up and never sideways.

The folders, bottom first; a file may include its own folder and the
folders of a lower rank. Folders of one rank (rpc and notify) do not
include each other.

    check_layers.py MESSAGING_DIR

Prints each include that breaks the order as FILE:LINE and fails.
"""
import os
import re
import sys

LAYERS = [
    ["detail"],
    ["wire"],
    ["transport"],
    ["rpc", "notify"],
    ["serving"],
]
RANK = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
PUBLIC = "coport/messaging/"


def folder_of(path, root):
    """The folder of a file under messaging/ (src/F/... or
    include/coport/messaging/F/...), or None."""
    rel = os.path.relpath(path, root).split(os.sep)
    if rel[0] == "src" and len(rel) > 2:
        return rel[1]
    if rel[:3] == ["include", "coport", "messaging"] and len(rel) > 4:
        return rel[3]
    return None


def included_folder(kind, name, path, root):
    """The messaging folder an include names, or None for anything else
    (other libraries, the standard library, Boost)."""
    if name.startswith(PUBLIC):
        rest = name[len(PUBLIC):].split("/")
        return rest[0] if len(rest) > 1 else "<top>"
    if kind == '"':
        # Quoted: next to the file, then from messaging/src (the library's
        # private include directory).
        for base in (os.path.dirname(path), os.path.join(root, "src")):
            candidate = os.path.normpath(os.path.join(base, name))
            if os.path.isfile(candidate):
                return folder_of(candidate, root) or "<top>"
        return "<unknown>"
    return None


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    root = os.path.abspath(sys.argv[1])
    files = 0
    includes = 0
    errors = []
    for top in ("src", "include"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for n in sorted(names):
                if not n.endswith((".hpp", ".cpp", ".h", ".ipp")):
                    continue
                path = os.path.join(dirpath, n)
                rel = os.path.relpath(path, os.path.dirname(root))
                own = folder_of(path, root)
                files += 1
                if own not in RANK:
                    errors.append(f"{rel}: not in a folder of the declared order {LAYERS}")
                    continue
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        other = included_folder(m.group(1), m.group(2), path, root)
                        if other is None:
                            continue
                        includes += 1
                        if other == own:
                            continue
                        if other not in RANK:
                            errors.append(f"{rel}:{lineno}: includes {m.group(2)}, outside the folders "
                                          f"{sorted(RANK)}")
                        elif RANK[other] >= RANK[own]:
                            where = "above" if RANK[other] > RANK[own] else "beside"
                            errors.append(f"{rel}:{lineno}: {own}/ includes {m.group(2)}, "
                                          f"in {other}/, {where} it")
    order = " <- ".join("/".join(f) for f in LAYERS)
    if files == 0:
        print(f"FAIL: no source or header under {root}")
        return 1
    for e in errors:
        print(e)
    if errors:
        print(f"FAIL: {len(errors)} problem(s) with the order {order}")
        return 1
    print(f"OK: {files} files, {includes} includes of messaging's folders, all down the order {order}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

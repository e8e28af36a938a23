#!/usr/bin/env python3
"""
One module, one unit: for each module of native-modules/modules.def, the C files outside its
own that name its identifiers.  Exit status 1 when there is any (ctest: module_footprint).

A module's own files are native-modules/<name>.c, <name>.h, <name>_*.c/h (its settings file
among them), native-modules/modules.def and everything under tests/.  The build file and the
documentation are not C, so they are not read at all.

What counts as naming a module, in code (comments and string literals are left out, so prose
and messages may name it freely):
  - an identifier h2p_<name>, h2p_<name>_*, h2p_module_<name>, h2p_conf_<name> (its types,
    its settings, its pipeline hooks), except the functions its header declares: those are
    its interface, for the parts that genuinely need it (an accessor, a flush command);
  - its settings slot: modules.<name>, settings-><name>, or any `.<name>->` / `-><name>->`;
  - its per-thread or per-request slot: H2P_MODULE_THREAD(x, <name>), H2P_MODULE_REQUEST(x,
    <name>), H2P_MODULE_INDEX(<name>).

Usage: scripts/module-footprint.py [SOURCE_DIR]   (default: the repository this script is in)
"""
import os
import re
import sys

SOURCE_DIRS_SKIPPED = {"build", "tests", ".git"}


def strip_comments_and_strings(text):
    """The code of a C file with comments, string and character literals blanked (newlines kept)."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def module_names(root):
    with open(os.path.join(root, "native-modules", "modules.def")) as f:
        code = strip_comments_and_strings(f.read())
    return re.findall(r"^\s*H2P_MODULE\(\s*(\w+)\s*,", code, re.M)


def interface_functions(root, name):
    """Functions native-modules/<name>.h declares: h2p_<name>_...(."""
    path = os.path.join(root, "native-modules", name + ".h")
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        code = strip_comments_and_strings(f.read())
    return set(re.findall(r"\b(h2p_%s_\w+)\s*\(" % name, code))


def is_own_file(rel, name):
    directory, base = os.path.split(rel)
    if directory != "native-modules":
        return False
    stem = os.path.splitext(base)[0]
    return base == "modules.def" or stem == name or stem.startswith(name + "_")


def c_files(root):
    for directory, subdirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        if rel_dir == ".":
            subdirs[:] = [d for d in subdirs if d not in SOURCE_DIRS_SKIPPED and not d.startswith("build")]
        for f in sorted(files):
            if f.endswith((".c", ".h")):
                yield os.path.normpath(os.path.join(rel_dir, f))


def pattern(name):
    n = re.escape(name)
    return re.compile(
        "|".join(
            [
                r"\bh2p_(?:module_|conf_)?%s(?:_\w+)?\b" % n,
                r"\bmodules\s*(?:\.|->)\s*%s\b" % n,
                r"\bsettings\s*->\s*%s\b" % n,
                r"(?:\.|->)\s*%s\s*->" % n,
                r"\bH2P_MODULE_(?:THREAD|REQUEST)\s*\([^(),]*,\s*%s\s*\)" % n,
                r"\bH2P_MODULE_INDEX(?:\s*\(\s*%s\s*\)|_%s\b)" % (n, n),
            ]
        )
    )


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    names = module_names(root)
    if not names:
        print("no module in native-modules/modules.def", file=sys.stderr)
        return 2
    code_of = {}
    for rel in c_files(root):
        with open(os.path.join(root, rel), errors="replace") as f:
            code_of[rel] = strip_comments_and_strings(f.read())
    found = 0
    for name in names:
        allowed = interface_functions(root, name)
        names_it = pattern(name)
        for rel, code in code_of.items():
            if is_own_file(rel, name) or name not in code:
                continue
            for m in names_it.finditer(code):
                if m.group(0) in allowed:
                    continue
                line = code.count("\n", 0, m.start()) + 1
                print("%s:%d: names module %s: %s" % (rel, line, name, m.group(0).strip()))
                found += 1
    if found:
        print(
            "%d reference(s) to modules outside their own files: give the module an accessor in its header, "
            "or a hook in h2p_module_t / h2p_module_conf_t (ARCHITECTURE.md, \"Adding a module\")" % found,
            file=sys.stderr,
        )
        return 1
    print("%d modules, each named only in its own files" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())

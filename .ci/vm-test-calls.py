#!/usr/bin/env python3
"""The VM tests' testScripts may call only test-driver methods that exist.

Reads every tests/vm/*.nix through `nix-instantiate --parse` (.ci/nixparse.py),
takes the `testScript` string of each test, and checks every
`<node>.<method>(` call on one of the test's `nodes` and every bare driver
call against the lists below, which were checked against nixpkgs'
nixos/lib/test-driver/src/test_driver/machine/__init__.py (Machine methods:
`wait_for_unit(unit, user=None, timeout=900)`,
`wait_until_succeeds(command, timeout=900)`, `succeed(*commands,
timeout=None)`, `fail(*commands, timeout=None)`, ...) and driver.py
(`start_all()`, `subtest(name)`). A method outside the list fails the check:
verify it there, then add it.
`--self-test` feeds a script calling `machine.wait_for_units(...)` (no such
method) and expects a failure.
"""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nixparse  # noqa: E402

MACHINE = {"succeed", "fail", "execute", "wait_for_unit", "wait_until_succeeds",
           "wait_until_fails", "wait_for_open_port", "wait_for_closed_port", "wait_for_file",
           "start", "shutdown", "crash", "reboot", "systemctl", "require_unit_state",
           "copy_from_vm", "copy_from_host", "wait_for_console_text", "log", "sleep"}
DRIVER = {"start_all", "subtest", "join_all", "serial_stdout_on", "serial_stdout_off"}
CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.([A-Za-z_]\w*)\(")
BARE = re.compile(r"(?m)^\s*(?:with\s+)?([A-Za-z_]\w*)\(")
PYTHON_OK = {"assert", "print", "def", "on", "range", "len", "str", "int"}


def strings(e):
    """The literal text of a testScript (antiquotations dropped)."""
    if e[0] == "str":
        return e[1]
    if e[0] == "concat":
        return "".join(strings(p) if p[0] in ("str", "concat") else "X" for p in e[1])
    return ""


def tests_in(path):
    top = nixparse.parse_file(path)
    while top[0] in ("lambda", "let"):
        top = top[4] if top[0] == "lambda" else top[2]
    if top[0] != "attrs":
        return []
    binds = {n: v for n, _, v in top[2]}
    if "testScript" not in binds:
        return []
    nodes = [n for n, _, _ in binds["nodes"][2]] if binds.get("nodes", ("",))[0] == "attrs" else []
    return [(nodes, strings(binds["testScript"]))]


def problems(path):
    found = []
    for nodes, script in tests_in(path):
        defined = set(re.findall(r"(?m)^\s*def\s+(\w+)\(", script))
        for obj, method in CALL.findall(script):
            if obj in nodes and method not in MACHINE:
                found.append(f"{path}: {obj}.{method}() is not a test-driver Machine method")
        for fn in BARE.findall(script):
            if fn in nodes or fn in defined or fn in PYTHON_OK:
                continue
            if fn not in DRIVER:
                found.append(f"{path}: {fn}() is not a test-driver function")
    return found


def main(argv):
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if argv[1:] == ["--self-test"]:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.nix")
            with open(path, "w", encoding="utf-8") as f:
                f.write('{ ... }: { name = "t"; nodes.machine = { }; testScript = '
                        "''\n  start_all()\n  machine.wait_for_units(\"k3s\")\n''; }\n")
            if problems(path):
                print("self-test: machine.wait_for_units() is rejected, as it must be")
                return 0
            print("self-test: machine.wait_for_units() was NOT rejected")
            return 1
    files = sorted(os.path.join("tests/vm", f) for f in os.listdir("tests/vm") if f.endswith(".nix"))
    found = [p for f in files for p in problems(f)]
    for p in found:
        print(p)
    if found:
        return 1
    n = sum(len(tests_in(f)) for f in files)
    print(f"{n} VM tests call only known test-driver methods")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

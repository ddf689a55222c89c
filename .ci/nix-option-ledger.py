#!/usr/bin/env python3
"""Every nixpkgs / nixos-hardware option the project sets must have a row in
nix/OPTIONS.md (issue #22).

    python3 .ci/nix-option-ledger.py              # check the tree
    python3 .ci/nix-option-ledger.py --list       # print what it extracts
    python3 .ci/nix-option-ledger.py --self-test  # the negative controls

How the option paths are found
------------------------------
Every .nix file under nixos/, nix/, tests/vm/ and flake.nix is read through
`nix-instantiate --parse` (Nix's own parser; .ci/nixparse.py reads its
desugared output, where `a.b.c = x;` is already a nested attrset).

Module expressions are recognised by shape, wherever they occur:
  * a function with `...` in its arguments (`{ config, lib, ... }: ...`),
    or one taking `config`, whose body is an attrset;
  * an attrset with an `imports` attribute;
  * an attrset element of a list bound to `modules` (nixosSystem);
  * `nodes.<name>` / `defaults` of a NixOS test (an attrset with
    `testScript` or `nodes`), and `specialisation.<name>.configuration`.
A test's own attributes (`name`, `globalTimeout`, `nodes`, `testScript`)
are options of nixpkgs' test framework and are collected too (scope `test`).

In a module, the configuration is its `config` attribute, or the whole
attrset less `imports`/`options`/`meta`/... when it has neither `config`
nor `options`. The walk goes through `lib.mkIf`, `mkMerge`, `mkDefault`,
`mkForce`, `mkOverride`, `mkBefore`, `mkAfter`, `mkOrder`,
`optionalAttrs`, `//`, `let`, `if` (both branches), let-bound names, and
helpers of another file (`(import ./role.nix { ... }).mkConfig args` is
followed into role.nix). `lib.mapAttrs'`/`mapAttrs`/`genAttrs`/
`listToAttrs` make a free-form name, written `<name>`, as does any
`${...}` name. Every path ends at a value that is not an attrset literal.

Own options (`edgewatch.*`, `services.edgewatch.*`) are left out.

How deep a path goes, and how a row covers it
---------------------------------------------
A row names one declared option, in the NixOS manual's spelling: a
free-form attribute name is a `<placeholder>` (`systemd.services.<name>`
matches `systemd.services.edgewatch-detector`). A path is covered by
  * a row that matches it whole, or
  * a row that matches a prefix of it and whose "below" column is `data`:
    the option's type takes arbitrary keys (freeform settings, attrsOf,
    JSON), so what is below is a value, not an option.
A `<name>` in a path (a `${...}` name) matches only a placeholder.

Anything the walk cannot see into fails the check instead of passing
silently: a module whose configuration is not an attrset it can read, and
an attrset outside every recognised module that sets a NixOS top-level
name (`services = { ... }`, `boot = { ... }`, ...).
Rows nothing uses fail too, so the ledger lists exactly what is set.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nixparse  # noqa: E402

LEDGER = "nix/OPTIONS.md"
ROOTS = ["nixos", "nix", "tests/vm", "flake.nix"]
OWN = [["edgewatch"], ["services", "edgewatch"]]
DYN = "<name>"

CONTENT_LAST = {"mkIf", "mkOverride", "mkOrder", "optionalAttrs", "mkIfNotNull"}
CONTENT_FIRST = {"mkDefault", "mkForce", "mkBefore", "mkAfter", "mkVMOverride",
                 "mkImageMediaOverride", "mkOptionDefault"}
NOT_CONFIG = {"imports", "options", "meta", "_file", "key", "disabledModules", "_class", "freeformType"}
# Top-level names of NixOS' option tree (the safety net's list).
NIXOS_TOP = {"assertions", "warnings", "boot", "console", "documentation", "environment",
             "fileSystems", "fonts", "hardware", "i18n", "networking", "nix", "nixpkgs",
             "powerManagement", "programs", "sdImage", "security", "services", "specialisation",
             "swapDevices", "system", "systemd", "time", "users", "virtualisation", "xdg",
             "zramSwap", "location", "appstream", "qt", "gtk", "containers", "image"}


def fn_name(e):
    if e[0] == "var":
        return e[1]
    if e[0] == "select" and e[2] and e[2][-1]:
        return e[2][-1]
    return None


def strip_lambdas(e):
    while e[0] == "lambda":
        e = e[4]
    return e


class Env:
    def __init__(self, parent=None, binds=None, file=None):
        self.parent, self.binds = parent, binds or {}
        self.file = file or (parent.file if parent else None)

    def lookup(self, name):
        env = self
        while env is not None:
            if name in env.binds:
                return env.binds[name]
            env = env.parent
        return None

    def with_let(self, bindings):
        new = Env(self, {})
        for name, value in bindings:
            new.binds[name] = (value, new)  # let is recursive
        return new

    def with_lambda(self, lam):
        _, arg, formals, _, _ = lam
        names = ([arg] if arg else []) + [n for n, _ in (formals or [])]
        return Env(self, {n: None for n in names})


class Extractor:
    def __init__(self):
        self.found = {}        # (scope, path tuple) -> set of files
        self.errors = []
        self.config_nodes = set()   # id() of attrsets walked as configuration/test
        self.walked = set()         # id() of module expressions already walked
        self.exempt = set()         # id() of subtrees that are not configuration (options)
        self.parsed = {}

    # -------------------------------------------------------------- files
    def parse(self, path):
        path = os.path.abspath(path)
        if path not in self.parsed:
            self.parsed[path] = nixparse.parse_file(path)
        return self.parsed[path]

    def emit(self, scope, path, file):
        if scope == "nixos" and any(tuple(path[:len(o)]) == tuple(o) for o in OWN):
            return
        self.found.setdefault((scope, tuple(path)), set()).add(os.path.relpath(file))

    # -------------------------------------------------------------- modules
    def module(self, e, env, scope="nixos"):
        """A module expression: function or attrset."""
        if id(e) in self.walked:
            return
        self.walked.add(id(e))
        while e[0] in ("lambda", "let"):
            if e[0] == "lambda":
                env = env.with_lambda(e)
                e = e[4]
            else:
                env = env.with_let(e[1])
                e = e[2]
            self.walked.add(id(e))
        if e[0] != "attrs":
            self.errors.append(f"{env.file}: a module whose body is not an attrset ({e[0]}); cannot see its options")
            return
        names = {n for n, _, _ in e[2]}
        if scope == "test" or "testScript" in names:
            return self.test(e, env)
        self.config_nodes.add(id(e))
        for n, dyn, v in e[2]:
            if n == "imports":
                self.imports(v, env)
            elif n in NOT_CONFIG:
                self.exempt.add(id(v))
            elif "config" in names or "options" in names:
                if n == "config":
                    self.config(v, [], env)
                else:
                    self.errors.append(f"{env.file}: module attribute {n} beside config/options")
            else:
                self.config(v, [n if dyn is None else DYN], env)
        for n in e[3]:
            self.emit("nixos", [n], env.file)

    def imports(self, v, env):
        for item in self.list_items(v, env):
            if item[0] in ("attrs", "lambda", "let"):
                self.module(item, env)

    def list_items(self, v, env):
        if v[0] == "list":
            return v[1]
        if v[0] == "binop" and v[1] == "++":
            return self.list_items(v[2], env) + self.list_items(v[3], env)
        return []

    def test(self, e, env):
        self.config_nodes.add(id(e))
        for n, dyn, v in e[2]:
            if n == "nodes":
                self.emit("test", ["nodes"], env.file)
                v2, env2 = self.resolve(v, env)
                if v2[0] != "attrs":
                    self.errors.append(f"{env.file}: test nodes are not an attrset")
                    continue
                self.config_nodes.add(id(v2))
                for _node, _, m in v2[2]:
                    self.module(m, env2)
            elif n == "defaults":
                self.emit("test", ["defaults"], env.file)
                self.module(v, env)
            else:
                self.emit("test", [n if dyn is None else DYN], env.file)

    # -------------------------------------------------------------- config
    def resolve(self, e, env, depth=0):
        """Follow let-bound names (and parentheses are gone already)."""
        while e[0] == "var" and depth < 20:
            hit = env.lookup(e[1])
            if hit is None:
                break
            e, env = hit
            depth += 1
        return e, env

    def config(self, e, path, env):
        scope = "nixos"
        e, env = self.resolve(e, env)
        kind = e[0]
        if kind == "attrs":
            self.config_nodes.add(id(e))
            for n, dyn, v in e[2]:
                sub = path + [n if dyn is None else DYN]
                if len(sub) == 3 and sub[0] == "specialisation" and sub[2] == "configuration":
                    self.emit(scope, ["specialisation", DYN, "configuration"], env.file)
                    self.module(v, env)
                else:
                    self.config(v, sub, env)
            for n in e[3]:
                self.emit(scope, path + [n], env.file)
            return
        if kind == "let":
            return self.config(e[2], path, env.with_let(e[1]))
        if kind == "if":
            self.config(e[2], path, env)
            return self.config(e[3], path, env)
        if kind == "assert":
            return self.config(e[2], path, env)
        if kind == "binop" and e[1] == "//":
            self.config(e[2], path, env)
            return self.config(e[3], path, env)
        if kind == "call":
            name, args = fn_name(e[1]), e[2]
            if name == "mkMerge" and args:
                items, ienv = self.resolve(args[0], env)
                for item in self.list_items(items, ienv):
                    self.config(item, path, ienv)
                return
            if name in CONTENT_LAST and args:
                return self.config(args[-1], path, env)
            if name in CONTENT_FIRST and args:
                return self.config(args[0], path, env)
            if name == "recursiveUpdate" and len(args) == 2:
                self.config(args[0], path, env)
                return self.config(args[1], path, env)
            if name in ("mapAttrs'", "mapAttrs", "genAttrs", "listToAttrs") and args:
                fn = args[0] if name != "genAttrs" else (args[1] if len(args) > 1 else args[0])
                body = strip_lambdas(fn) if fn[0] == "lambda" else fn
                if name == "listToAttrs":
                    body = ("list", [])
                    items, _ = self.resolve(args[0], env)
                    for item in self.list_items(items, env):
                        self.dyn_value(item, path, env)
                    return
                return self.dyn_value(body, path, env)
            helper = self.helper(e, env)
            if helper is not None:
                return self.config(helper[0], path, helper[1])
        if not path:
            self.errors.append(f"{env.file}: module configuration the walk cannot read ({kind})")
            return
        self.emit(scope, path, env.file)

    def dyn_value(self, body, path, env):
        if body[0] == "call" and fn_name(body[1]) == "nameValuePair" and len(body[2]) == 2:
            return self.config(body[2][1], path + [DYN], env)
        if body[0] == "attrs" and {n for n, _, _ in body[2]} >= {"name", "value"}:
            value = [v for n, _, v in body[2] if n == "value"][0]
            return self.config(value, path + [DYN], env)
        return self.config(body, path + [DYN], env)

    def helper(self, call, env):
        """`x.f args` where x is let-bound to `import FILE args`: the body of
        FILE's attribute f, with FILE's let-bindings."""
        fn = call[1]
        if fn[0] != "select" or fn[1][0] != "var" or len(fn[2]) != 1 or fn[2][0] is None:
            return None
        bound, _ = self.resolve(fn[1], env)
        if bound[0] == "call" and fn_name(bound[1]) == "import" and bound[2][0][0] == "path":
            target = bound[2][0][1]
        elif bound[0] == "call" and bound[1][0] == "call" and fn_name(bound[1][1]) == "import":
            target = bound[1][2][0][1]
        else:
            return None
        if not os.path.isfile(target):
            return None
        top = self.parse(target)
        fenv = Env(None, {}, target)
        while top[0] in ("lambda", "let"):
            if top[0] == "lambda":
                fenv = fenv.with_lambda(top)
                top = top[4]
            else:
                fenv = fenv.with_let(top[1])
                top = top[2]
        if top[0] != "attrs":
            return None
        for n, _, v in top[2]:
            if n == fn[2][0]:
                self.walked.add(id(v))
                while v[0] in ("lambda", "let"):
                    if v[0] == "lambda":
                        fenv = fenv.with_lambda(v)
                        v = v[4]
                    else:
                        fenv = fenv.with_let(v[1])
                        v = v[2]
                return v, fenv
        return None

    # -------------------------------------------------------------- discovery
    def scan(self, path):
        top = self.parse(path)
        self.discover(top, Env(None, {}, path), path, in_inputs=False)

    def discover(self, e, env, path, in_inputs):
        """Find module expressions anywhere in a file and walk them."""
        kind = e[0]
        if kind == "lambda":
            body = e[4]
            benv = env.with_lambda(e)
            while body[0] == "let":
                benv = benv.with_let(body[1])
                body = body[2]
            formals = {n for n, _ in (e[2] or [])}
            if body[0] == "attrs" and (e[3] or "config" in formals):
                self.module(e, env)
            return self.discover(e[4], benv, path, in_inputs)
        if kind == "let":
            env = env.with_let(e[1])
            for _, v in e[1]:
                self.discover(v, env, path, in_inputs)
            return self.discover(e[2], env, path, in_inputs)
        if kind == "attrs":
            names = {n for n, _, _ in e[2]}
            if "imports" in names:
                self.module(e, env)
            if e[1]:
                env = env.with_let([(n, v) for n, d, v in e[2] if d is None])
            for n, dyn, v in e[2]:
                if n == "modules":
                    for item in self.list_items(v, env):
                        if item[0] in ("attrs", "lambda"):
                            self.module(item, env)
                if id(v) in self.exempt:
                    continue
                self.discover(v, env, path, in_inputs or (path == "flake.nix" and n == "inputs"))
            if in_inputs:
                self.exempt.add(id(e))
            return
        for child in children(e):
            self.discover(child, env, path, in_inputs)

    def safety_net(self, path):
        top = self.parse(path)
        for e in walk(top, self.exempt):
            if e[0] != "attrs" or id(e) in self.config_nodes:
                continue
            for n, dyn, v in e[2]:
                if n in NIXOS_TOP and v[0] in ("attrs", "list") and not (v[0] == "list" and n not in ("assertions", "warnings")):
                    self.errors.append(
                        f"{path}: `{n} = ...` in an attrset outside every module this script recognises; "
                        "make it a module (or teach .ci/nix-option-ledger.py the shape)")


def children(e):
    kind = e[0]
    if kind == "list":
        return list(e[1])
    if kind == "attrs":
        return [v for _, _, v in e[2]] + [d for _, d, _ in e[2] if d is not None]
    if kind == "lambda":
        return [e[4]] + [d for _, d in (e[2] or []) if d is not None]
    if kind == "call":
        return [e[1]] + list(e[2])
    if kind == "select":
        return [e[1]] + ([e[3]] if e[3] is not None else [])
    if kind == "hasattr":
        return [e[1]]
    if kind == "let":
        return [v for _, v in e[1]] + [e[2]]
    if kind in ("with", "assert"):
        return [e[1], e[2]]
    if kind == "if":
        return [e[1], e[2], e[3]]
    if kind == "binop":
        return [e[2], e[3]]
    if kind == "not":
        return [e[1]]
    if kind == "concat":
        return list(e[1])
    return []


def walk(e, exempt):
    stack = [e]
    while stack:
        x = stack.pop()
        if id(x) in exempt:
            continue
        yield x
        stack.extend(children(x))


# ------------------------------------------------------------------ ledger
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")
DECL = re.compile(r"^`NixOS/(nixpkgs|nixos-hardware):([A-Za-z0-9_./+\-]+\.nix)`$")
COMMIT = re.compile(r"^`([0-9a-f]{8,40})`( †)?$")  # † = declaration not seen in the copy read


def read_ledger(path):
    rows, errors = {}, []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            m = ROW.match(line)
            if not m:
                continue
            option = m.group(1)
            cells = [c.strip() for c in m.group(2).split("|")]
            where = f"{path}:{lineno}"
            if len(cells) != 5:
                errors.append(f"{where}: want 6 columns (option | scope | type | below | declared in | read at)")
                continue
            scope, typ, below, decl, commit = cells
            if scope not in ("nixos", "test"):
                errors.append(f"{where}: scope must be nixos or test, not {scope!r}")
            if not typ:
                errors.append(f"{where}: empty type")
            if below not in ("—", "data"):
                errors.append(f"{where}: below must be — or data, not {below!r}")
            if not DECL.match(decl):
                errors.append(f"{where}: declared-in must be `NixOS/nixpkgs:path.nix` or `NixOS/nixos-hardware:path.nix`")
            if not COMMIT.match(commit):
                errors.append(f"{where}: read-at must be a commit in backquotes (8-40 hex digits), optionally followed by †")
            key = (scope, tuple(option.split(".")))
            if key in rows:
                errors.append(f"{where}: {option} listed twice")
            rows[key] = {"below": below, "line": lineno}
    return rows, errors


def comp_match(row_comp, path_comp):
    if row_comp.startswith("<") and row_comp.endswith(">"):
        return True
    return path_comp != DYN and row_comp == path_comp


def covers(row_key, row, key):
    (rscope, rpath), (scope, path) = row_key, key
    if rscope != scope or len(rpath) > len(path):
        return False
    if len(rpath) < len(path) and row["below"] != "data":
        return False
    return all(comp_match(r, p) for r, p in zip(rpath, path))


def extract(files):
    ex = Extractor()
    for f in files:
        ex.scan(f)
    for f in files:
        ex.safety_net(f)
    return ex


def project_files():
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--"] + ROOTS,
        check=True, capture_output=True, text=True).stdout
    return sorted(p for p in out.splitlines() if p.endswith(".nix") and os.path.exists(p))


def check(files, ledger):
    ex = extract(files)
    rows, errors = read_ledger(ledger)
    errors = ex.errors + errors
    used = set()
    missing = []
    for key in sorted(ex.found):
        # The longest matching row is the one that covers it.
        hits = [rk for rk, row in rows.items() if covers(rk, row, key)]
        if not hits:
            missing.append(key)
            continue
        used.add(max(hits, key=lambda rk: len(rk[1])))
    for scope, path in missing:
        files_ = ", ".join(sorted(ex.found[(scope, path)]))
        errors.append(f"no row in {ledger} for {scope} option {'.'.join(path)} (set in {files_})")
    for rk in sorted(set(rows) - used):
        errors.append(f"{ledger}:{rows[rk]['line']}: row {'.'.join(rk[1])} ({rk[0]}) covers nothing the project sets")
    return ex, rows, errors


def self_test():
    """Negative controls: a fake option in a module, one hidden in
    mkIf/mkMerge/mapAttrs', one in a helper file, and an attrset outside any
    module must each fail the check; the real tree must pass."""
    files = project_files()
    _, _, errors = check(files, LEDGER)
    rc = 0
    if errors:
        print("self-test: the real tree does not pass:", *errors, sep="\n  ")
        rc = 1
    cases = {
        "a fake option in a plain module":
            ("{ lib, ... }: { services.notAnOption.enable = true; }", "services.notAnOption.enable"),
        "a fake option under mkIf/mkMerge":
            ("{ config, lib, ... }: { options.edgewatch.x = lib.mkOption { }; config = lib.mkIf true "
             "(lib.mkMerge [ { } (lib.mkDefault { boot.notAnOption = [ ]; }) ]); }", "boot.notAnOption"),
        "a fake sub-option of a listed option":
            ("{ lib, ... }: { systemd.services = lib.mapAttrs' (n: v: lib.nameValuePair n "
             "{ notAUnitOption = 1; }) { }; }", "systemd.services.<name>.notAUnitOption"),
        "a fake option in a test node":
            ("{ ... }: { name = \"t\"; nodes.m = { networking.notAnOption = 1; }; testScript = \"\"; }",
             "networking.notAnOption"),
        "an option set outside any module":
            ("let m = { services.k3s.enable = true; }; in m", "outside every module"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, expect) in cases.items():
            path = os.path.join(tmp, "case.nix")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            _, _, errs = check(files + [path], LEDGER)
            if any(expect in err for err in errs):
                print(f"self-test: {name} fails the check, as it must ({expect})")
            else:
                print(f"self-test: {name} does NOT fail the check ({expect}); errors: {errs}")
                rc = 1
    return rc


def main(argv):
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if argv[1:] == ["--self-test"]:
        return self_test()
    files = project_files()
    if argv[1:] == ["--list"]:
        ex = extract(files)
        for (scope, path), where in sorted(ex.found.items()):
            print(f"{scope:5} {'.'.join(path):70} {', '.join(sorted(where))}")
        for err in ex.errors:
            print("ERROR", err)
        return 0
    ex, rows, errors = check(files, LEDGER)
    for err in errors:
        print(err)
    if errors:
        return 1
    print(f"{len(ex.found)} option paths set in {len(files)} files, all covered by the {len(rows)} rows of {LEDGER}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

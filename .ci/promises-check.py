#!/usr/bin/env python3
"""The promises ledger check (issue #27).

Every behavioural claim in README.md, bench/README.md, nix/README.md and
nix/DEPLOYING.md carries an anchor right after it, an HTML comment that does
not render:

    ... a restart after acceptance does not resend. <!-- promise: delivery-survives-sigkill -->

tests/PROMISES.md has one table row per anchor:

    | id | claim (quoted briefly) | test(s) | how it fails if the claim broke |

and the test cell names what proves it, several separated by `<br>`:

    rust:integration::events::sigkill_of_the_detector_loses_no_event
        a `#[test]`/`#[tokio::test]` fn in tests/integration/events.rs
    rust:edgewatch::spool::tests::atomic_write_leaves_no_temp_and_replaces
        a test fn in src/spool.rs (or src/spool/mod.rs); `tests` is the module
    pytest:model/tests/test_errors.py::test_contract_errors
    ci:<exact name of a `check "NAME" ...` in .ci/nix-checks.sh or .ci/observability-checks.sh>
    golden:<name of a { name = "..."; } test in nix/tests/*.nix>
    script:nix/tests/<file>.sh        (and CI must run it)
    bench:cargo bench --bench NAME    (benches/NAME.rs, a [[bench]] of Cargo.toml)
    bench:bench/<script>              (the script exists)
    none: <why no test can prove it here> (closest: <one of the forms above>)
    untested: <the test that is missing> [(closest: <form>)]

It fails (exit 1), listing each problem, when an anchor has no row, a row has
no anchor, an id is duplicated (in the docs or the ledger), an anchor sits in
a fenced code block (where it would render), a named test does not exist, or
a row is `untested:`. `untested:` rows are listed and counted on their own;
EW_PROMISES_ALLOW_UNTESTED=1 reports them without failing (for local work
while the tests are written; CI does not set it).

    python3 .ci/promises-check.py [--root DIR]
    python3 .ci/promises-check.py --self-test

Standard library only.
"""

import os
import re
import sys
import tempfile
from pathlib import Path

DOCS = ["README.md", "bench/README.md", "nix/README.md", "nix/DEPLOYING.md"]
LEDGER = "tests/PROMISES.md"
CI_SCRIPTS = [".ci/nix-checks.sh", ".ci/observability-checks.sh"]

ID = r"[a-z0-9]+(?:-[a-z0-9]+)*"
ANCHOR_RE = re.compile(r"<!--\s*promise:\s*(\S*?)\s*-->")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
CHECK_RE = re.compile(r'^\s*check\s+"((?:[^"\\]|\\.)*)"', re.M)
TEST_ATTR_RE = re.compile(r"^\s*#\[(?:tokio::)?test\b")
IGNORE_ATTR_RE = re.compile(r"^\s*#\[ignore\b")
FORMS = ("rust", "pytest", "ci", "golden", "script", "bench")


# ------------------------------------------------------------------ parsing
def anchors(root):
    """{id: [(doc, line)]} and problems (bad ids, anchors in code blocks)."""
    found, problems = {}, []
    for doc in DOCS:
        path = root / doc
        if not path.exists():
            problems.append(f"{doc}: missing (the ledger covers it)")
            continue
        fenced = False
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE_RE.match(line):
                fenced = not fenced
            for m in ANCHOR_RE.finditer(line):
                pid = m.group(1)
                where = f"{doc}:{n}"
                if not re.fullmatch(ID, pid):
                    problems.append(f"{where}: anchor id `{pid}` is not short-kebab-case ([a-z0-9] words joined by single dashes)")
                    continue
                if fenced:
                    problems.append(f"{where}: anchor `{pid}` is inside a fenced code block, where it would render")
                found.setdefault(pid, []).append(where)
    for pid, wheres in found.items():
        if len(wheres) > 1:
            problems.append(f"anchor id `{pid}` is used {len(wheres)} times: {', '.join(wheres)}")
    return found, problems


def split_row(line):
    """The cells of a Markdown table row; `\\|` is a literal bar."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    cells = re.split(r"(?<!\\)\|", body)
    return [c.strip().replace("\\|", "|") for c in cells]


def unquote(s):
    s = s.strip()
    m = re.fullmatch(r"(`+)\s?(.*?)\s?\1", s)
    return m.group(2) if m else s


def ledger_rows(root):
    """[(id, claim, [test refs], how, line)] and problems."""
    path = root / LEDGER
    if not path.exists():
        return [], [f"{LEDGER}: missing"]
    rows, problems = [], []
    in_table = ledger_table = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = split_row(line)
        if not in_table:
            # A table's header row: only tables headed `| id | ...` are the ledger's.
            in_table, ledger_table = True, unquote(cells[0]).lower() == "id"
            continue
        if not ledger_table or all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            continue  # another table, or the separator row
        where = f"{LEDGER}:{n}"
        if len(cells) != 4:
            problems.append(f"{where}: a row needs 4 cells (id | claim | test(s) | how it fails), has {len(cells)}")
            continue
        pid, claim, tests, how = cells
        pid = unquote(pid)
        refs = [unquote(t) for t in re.split(r"<br\s*/?>", tests) if t.strip()]
        if not claim:
            problems.append(f"{where}: `{pid}` quotes no claim")
        if not refs:
            problems.append(f"{where}: `{pid}` names no test")
        if not how:
            problems.append(f"{where}: `{pid}` does not say how the test would fail")
        rows.append((pid, claim, refs, how, where))
    return rows, problems


# ------------------------------------------------------------------ resolving test references
class Resolver:
    def __init__(self, root):
        self.root = root
        self._checks = None
        self._golden = None
        self._ci_text = None

    def ci_text(self):
        if self._ci_text is None:
            self._ci_text = "\n".join(
                (self.root / s).read_text(encoding="utf-8") for s in CI_SCRIPTS if (self.root / s).exists()
            )
        return self._ci_text

    def checks(self):
        if self._checks is None:
            self._checks = set(CHECK_RE.findall(self.ci_text()))
        return self._checks

    def golden(self):
        if self._golden is None:
            self._golden = set()
            for f in sorted((self.root / "nix/tests").glob("*.nix")):
                self._golden.update(re.findall(r'\bname\s*=\s*"((?:[^"\\]|\\.)*)"\s*;', f.read_text(encoding="utf-8")))
        return self._golden

    def rust_fn(self, path, fn):
        """None if `fn` is a test function of `path`, else why not."""
        if not path.exists():
            return f"{path.relative_to(self.root)} does not exist"
        lines = path.read_text(encoding="utf-8").splitlines()
        fn_re = re.compile(rf"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?fn\s+{re.escape(fn)}\s*\(")
        seen = False
        for i, line in enumerate(lines):
            if not fn_re.match(line):
                continue
            seen = True
            # The attributes and doc comments right above it (blank lines and the tail of a
            # multi-line attribute allowed), not the previous item's.
            j = i
            while j > 0 and re.match(r"^\s*(#\[|//|$)|^[^{};]*\)\]\s*$", lines[j - 1]):
                j -= 1
            attrs = lines[j:i]
            if any(TEST_ATTR_RE.match(a) for a in attrs):
                if any(IGNORE_ATTR_RE.match(a) for a in attrs):
                    return f"{fn} in {path.relative_to(self.root)} is #[ignore]d: it proves nothing in CI"
                return None
        if seen:
            return f"fn {fn} in {path.relative_to(self.root)} is not marked #[test] or #[tokio::test]"
        return f"no fn {fn} in {path.relative_to(self.root)}"

    def rust(self, ref):
        parts = ref.split("::")
        if len(parts) < 2 or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
            return f"`rust:{ref}` is not a Rust path (crate::module::fn)"
        crate, mods, fn = parts[0], parts[1:-1], parts[-1]
        if crate == "integration":
            if len(mods) != 1:
                return f"`rust:{ref}`: integration tests are integration::<module>::<fn>"
            return self.rust_fn(self.root / "tests/integration" / f"{mods[0]}.rs", fn)
        if crate == "edgewatch":
            if mods and mods[-1] == "tests":
                mods = mods[:-1]
            if not mods:
                return self.rust_fn(self.root / "src/lib.rs", fn)
            base = self.root / "src" / Path(*mods)
            for cand in (base.with_suffix(".rs"), base / "mod.rs"):
                if cand.exists():
                    return self.rust_fn(cand, fn)
            return f"`rust:{ref}`: no src/{'/'.join(mods)}.rs or src/{'/'.join(mods)}/mod.rs"
        return f"`rust:{ref}`: the crate must be `edgewatch` (unit tests) or `integration` (tests/integration)"

    def pytest(self, ref):
        if "::" not in ref:
            return f"`pytest:{ref}` needs FILE::test_name"
        file, name = ref.split("::", 1)
        name = name.split("[", 1)[0]  # a parametrised id
        path = self.root / file
        if not file.startswith("model/tests/") or not path.exists():
            return f"`pytest:{ref}`: {file} does not exist under model/tests/"
        if not re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", path.read_text(encoding="utf-8"), re.M):
            return f"`pytest:{ref}`: no def {name} in {file}"
        return None

    def bench(self, ref):
        m = re.search(r"\bcargo bench\b.*--bench[ =](\S+)", ref)
        if m:
            name = m.group(1)
            cargo = (self.root / "Cargo.toml").read_text(encoding="utf-8") if (self.root / "Cargo.toml").exists() else ""
            if not (self.root / "benches" / f"{name}.rs").exists():
                return f"`bench:{ref}`: benches/{name}.rs does not exist"
            if not re.search(rf'\[\[bench\]\]\s*\nname\s*=\s*"{re.escape(name)}"', cargo):
                return f"`bench:{ref}`: Cargo.toml has no [[bench]] named {name}"
            return None
        m = re.search(r"(?:^|\s)(bench/\S+)", ref)
        if m:
            return None if (self.root / m.group(1)).is_file() else f"`bench:{ref}`: {m.group(1)} does not exist"
        return f"`bench:{ref}` names neither `cargo bench --bench NAME` nor a bench/ script"

    def script(self, ref):
        if not re.fullmatch(r"nix/tests/[A-Za-z0-9._-]+\.sh", ref):
            return f"`script:{ref}` must be nix/tests/<file>.sh"
        if not (self.root / ref).is_file():
            return f"`script:{ref}` does not exist"
        if ref not in self.ci_text():
            return f"`script:{ref}` is not run by {' or '.join(CI_SCRIPTS)}"
        return None

    def resolve(self, ref):
        """None if `ref` names a test that exists, else why not. (none/untested are handled by the caller.)"""
        form, sep, rest = ref.partition(":")
        rest = rest.strip()
        if not sep or form not in FORMS:
            return f"`{ref}`: unknown form (use {', '.join(f + ':' for f in FORMS)}, none: or untested:)"
        if not rest:
            return f"`{ref}`: names nothing"
        if form == "rust":
            return self.rust(rest)
        if form == "pytest":
            return self.pytest(rest)
        if form == "ci":
            return None if rest in self.checks() else f"`ci:{rest}`: no `check \"{rest}\"` in {' or '.join(CI_SCRIPTS)}"
        if form == "golden":
            return None if rest in self.golden() else f"`golden:{rest}`: no test named so in nix/tests/*.nix"
        if form == "script":
            return self.script(rest)
        return self.bench(rest)


CLOSEST_RE = re.compile(r"\(closest:\s*(.+)\)\s*$", re.S)


def kind_of(ref):
    return ref.partition(":")[0].strip()


# ------------------------------------------------------------------ the check
def check(root):
    """(problems, untested rows, summary lines)."""
    root = Path(root)
    found, problems = anchors(root)
    rows, row_problems = ledger_rows(root)
    problems += row_problems
    r = Resolver(root)
    untested, kinds, seen, strongest = [], {}, {}, {}
    for pid, claim, refs, how, where in rows:
        if not re.fullmatch(ID, pid):
            problems.append(f"{where}: id `{pid}` is not short-kebab-case")
        if pid in seen:
            problems.append(f"{where}: id `{pid}` already has a row at {seen[pid]}")
            continue
        seen[pid] = where
        if pid not in found:
            problems.append(f"{where}: `{pid}` has a row but no `<!-- promise: {pid} -->` anchor in {', '.join(DOCS)}")
        for ref in refs:
            k = kind_of(ref)
            if k in ("none", "untested"):
                if len(refs) > 1:
                    problems.append(f"{where}: `{pid}`: a `{k}:` row names nothing else")
                text = ref.partition(":")[2].strip()
                m = CLOSEST_RE.search(text)
                if k == "none" and not m:
                    problems.append(f"{where}: `{pid}`: `none:` must name the closest check: `none: WHY (closest: FORM:...)`")
                if m:
                    closest = unquote(m.group(1))
                    if kind_of(closest) in ("none", "untested"):
                        problems.append(f"{where}: `{pid}`: the closest check must be a test, not `{closest}`")
                    else:
                        why = r.resolve(closest)
                        if why:
                            problems.append(f"{where}: `{pid}`: closest check: {why}")
                if not (m.string[:m.start()] if m else text).strip():
                    problems.append(f"{where}: `{pid}`: `{k}:` must say why / what is missing")
                if k == "untested":
                    untested.append((pid, claim, text, where))
            else:
                why = r.resolve(ref)
                if why:
                    problems.append(f"{where}: `{pid}`: {why}")
            kinds[k] = kinds.get(k, 0) + 1
        order = FORMS + ("none", "untested")
        best = min((order.index(kind_of(x)) for x in refs if kind_of(x) in order), default=None)
        if best is not None:
            strongest[order[best]] = strongest.get(order[best], 0) + 1
    for pid, wheres in sorted(found.items()):
        if pid not in seen:
            problems.append(f"{wheres[0]}: anchor `{pid}` has no row in {LEDGER}")
    per_doc = {d: sum(1 for w in found.values() if w[0].startswith(d + ":")) for d in DOCS}
    summary = [
        "promises: " + f"{len(found)} anchored claims (" + ", ".join(f"{d} {n}" for d, n in per_doc.items()) + ")",
        "promises: " + f"{len(rows)} rows; by their strongest proof: "
        + ", ".join(f"{k} {strongest[k]}" for k in FORMS + ("none", "untested") if k in strongest),
        "promises: test references by kind: " + ", ".join(f"{k} {kinds[k]}" for k in sorted(kinds)),
    ]
    return problems, untested, summary


def main(root):
    problems, untested, summary = check(root)
    for line in summary:
        print(line)
    allow = os.environ.get("EW_PROMISES_ALLOW_UNTESTED") == "1"
    if untested:
        print(f"promises: {len(untested)} claim(s) have no test yet (`untested:` rows):")
        for pid, claim, text, where in untested:
            print(f"  UNTESTED {pid} ({where}): {text}")
        if allow:
            print("promises: EW_PROMISES_ALLOW_UNTESTED=1: untested rows reported, not failed")
    if problems:
        print(f"promises: {len(problems)} problem(s):")
        for p in problems:
            print(f"  FAIL {p}")
    failed = bool(problems) or (bool(untested) and not allow)
    print(f"promises: {'FAIL' if failed else 'ok'} ({len(problems)} problem(s), {len(untested)} untested)")
    return 1 if failed else 0


# ------------------------------------------------------------------ self-test
FIXTURE = {
    "README.md": "# x\n\nIt resends after a crash. <!-- promise: resends-after-crash -->\n"
    "The pods stay ready. <!-- promise: pods-ready -->\n"
    "A Pi boots. <!-- promise: pi-boots -->\n"
    "Fast enough. <!-- promise: fast-enough -->\n",
    "bench/README.md": "# b\n\nLow RSS. <!-- promise: low-rss -->\n",
    "nix/README.md": "# n\n\nGolden. <!-- promise: golden-claim -->\nScripted. <!-- promise: scripted-claim -->\n",
    "nix/DEPLOYING.md": "# d\n\nTrained. <!-- promise: trained -->\nUnit. <!-- promise: unit-claim -->\n",
    "tests/integration/events.rs": "#[test]\nfn sigkill_loses_nothing() {}\n\nfn helper() {}\n",
    "tests/integration/pod.rs": "/// Doc.\n#[tokio::test(flavor = \"multi_thread\")]\nasync fn pods_ready() {}\n"
    "#[test]\n#[ignore]\nfn ignored_one() {}\n",
    "src/spool.rs": "pub fn x() {}\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn atomic() {}\n}\n",
    "src/watchdog/mod.rs": "#[cfg(test)]\nmod tests {\n    #[test]\n    fn limiter() {}\n}\n",
    "model/tests/test_train.py": "def test_converges(tmp_path):\n    pass\n",
    ".ci/nix-checks.sh": 'check "golden tests" golden\ncheck "preflight (fake tree)" bash nix/tests/preflight-test.sh\n',
    ".ci/observability-checks.sh": 'check "outage: central down ${OUTAGE_SECONDS}s" outage\n',
    "nix/tests/site.nix": '[ { name = "bad descriptions are rejected"; actual = 1; expected = 1; } ]\n',
    "nix/tests/preflight-test.sh": "true\n",
    "nix/tests/unused-test.sh": "true\n",
    "benches/alert.rs": "fn main() {}\n",
    "bench/soak.sh": "true\n",
    "Cargo.toml": '[package]\nname = "edgewatch"\n\n[[bench]]\nname = "alert"\nharness = false\n',
}
LEDGER_HEAD = ("# Promises\n\n| form | meaning |\n| --- | --- |\n| `rust:` | a test |\n\n"
               "| id | claim | test(s) | how it fails |\n| --- | --- | --- | --- |\n")
LEDGER_ROWS = [
    "| `resends-after-crash` | \"resends after a crash\" | `rust:integration::events::sigkill_loses_nothing`<br>`ci:outage: central down ${OUTAGE_SECONDS}s` | a second copy |",
    "| `pods-ready` | \"stay ready\" | `rust:integration::pod::pods_ready` | probe 503 |",
    "| `pi-boots` | \"a Pi boots\" | none: needs a Pi (closest: `golden:bad descriptions are rejected`) | - |",
    "| `fast-enough` | \"fast\" | `bench:cargo bench --bench alert` | ratio below target |",
    "| `low-rss` | \"low RSS\" | `bench:bench/soak.sh 3600 60` | slope above 0 |",
    "| `golden-claim` | \"golden\" | `golden:bad descriptions are rejected` | accepted |",
    "| `scripted-claim` | \"scripted\" | `script:nix/tests/preflight-test.sh`<br>`ci:preflight (fake tree)` | passes broken |",
    "| `trained` | \"trained \\| evaluated\" | `pytest:model/tests/test_train.py::test_converges` | chance |",
    "| `unit-claim` | \"unit\" | `rust:edgewatch::spool::tests::atomic`<br>`rust:edgewatch::watchdog::tests::limiter` | temp left |",
]


def write_tree(root, files):
    for rel, text in files.items():
        p = Path(root) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def self_test():
    def run(mutate_files=None, rows=None, expect=None, expect_untested=0):
        with tempfile.TemporaryDirectory() as d:
            files = dict(FIXTURE)
            files[LEDGER] = LEDGER_HEAD + "\n".join(LEDGER_ROWS if rows is None else rows) + "\n"
            if mutate_files:
                files.update(mutate_files)
            write_tree(d, files)
            problems, untested, _ = check(d)
        text = "\n".join(problems)
        if expect is None:
            assert not problems, f"the good fixture must pass, got:\n{text}"
        else:
            assert re.search(expect, text), f"expected a problem matching /{expect}/, got:\n{text or '(none)'}"
        assert len(untested) == expect_untested, f"untested rows: {len(untested)}, expected {expect_untested}"
        return problems

    def rows_with(i, row):
        out = list(LEDGER_ROWS)
        out[i] = row
        return out

    cases = [
        ("the good fixture passes", {}, None, None, 0),
        ("an anchor without a row", {"README.md": FIXTURE["README.md"] + "New. <!-- promise: brand-new -->\n"},
         None, r"anchor `brand-new` has no row", 0),
        ("a row without an anchor", None, LEDGER_ROWS + ["| `orphan` | \"x\" | `rust:integration::pod::pods_ready` | y |"],
         r"`orphan` has a row but no .*anchor", 0),
        ("an id anchored twice", {"nix/README.md": FIXTURE["nix/README.md"] + "Again. <!-- promise: pods-ready -->\n"},
         None, r"anchor id `pods-ready` is used 2 times", 0),
        ("an id with two rows", None, LEDGER_ROWS + [LEDGER_ROWS[1]], r"`pods-ready` already has a row", 0),
        ("an anchor in a code block", {"bench/README.md": FIXTURE["bench/README.md"] + "```\nx <!-- promise: in-code -->\n```\n"},
         None, r"`in-code` is inside a fenced code block", 0),
        ("a malformed id", {"README.md": FIXTURE["README.md"] + "Bad. <!-- promise: Bad_Id -->\n"},
         None, r"`Bad_Id` is not short-kebab-case", 0),
        ("a missing integration test fn", None,
         rows_with(1, "| `pods-ready` | \"x\" | `rust:integration::pod::pods_are_ready` | y |"), r"no fn pods_are_ready", 0),
        ("an integration module that does not exist", None,
         rows_with(1, "| `pods-ready` | \"x\" | `rust:integration::kubelet::pods_ready` | y |"), r"tests/integration/kubelet.rs does not exist", 0),
        ("a fn that is not a test", None,
         rows_with(0, "| `resends-after-crash` | \"x\" | `rust:integration::events::helper` | y |"), r"not marked #\[test\]", 0),
        ("an ignored test", None,
         rows_with(1, "| `pods-ready` | \"x\" | `rust:integration::pod::ignored_one` | y |"), r"#\[ignore\]d", 0),
        ("a missing unit test", None,
         rows_with(8, "| `unit-claim` | \"x\" | `rust:edgewatch::spool::tests::atomics` | y |"), r"no fn atomics in src/spool.rs", 0),
        ("a unit module that does not exist", None,
         rows_with(8, "| `unit-claim` | \"x\" | `rust:edgewatch::archive::tests::atomic` | y |"), r"no src/archive.rs", 0),
        ("a missing pytest", None,
         rows_with(7, "| `trained` | \"x\" | `pytest:model/tests/test_train.py::test_diverges` | y |"), r"no def test_diverges", 0),
        ("a ci check that does not exist", None,
         rows_with(0, "| `resends-after-crash` | \"x\" | `ci:outage: central down 300s` | y |"), r"no `check \"outage: central down 300s\"`", 0),
        ("a golden test that does not exist", None,
         rows_with(5, "| `golden-claim` | \"x\" | `golden:good descriptions pass` | y |"), r"`golden:good descriptions pass`: no test", 0),
        ("a script CI does not run", None,
         rows_with(6, "| `scripted-claim` | \"x\" | `script:nix/tests/unused-test.sh` | y |"), r"is not run by", 0),
        ("a bench that does not exist", None,
         rows_with(3, "| `fast-enough` | \"x\" | `bench:cargo bench --bench clip` | y |"), r"benches/clip.rs does not exist", 0),
        ("a bench script that does not exist", None,
         rows_with(4, "| `low-rss` | \"x\" | `bench:bench/leak.sh` | y |"), r"bench/leak.sh does not exist", 0),
        ("an unknown form", None,
         rows_with(4, "| `low-rss` | \"x\" | `vm:camera-pipeline` | y |"), r"unknown form", 0),
        ("a none: without its closest check", None,
         rows_with(2, "| `pi-boots` | \"x\" | none: needs a Pi | y |"), r"must name the closest check", 0),
        ("a none: whose closest check does not exist", None,
         rows_with(2, "| `pi-boots` | \"x\" | none: needs a Pi (closest: `golden:the Pi boots`) | y |"), r"closest check: `golden:the Pi boots`", 0),
        ("an untested: row", None,
         rows_with(1, "| `pods-ready` | \"x\" | untested: a probe test (closest: `rust:integration::pod::pods_ready`) | y |"),
         None, 1),
        ("a row with too few cells", None, rows_with(1, "| `pods-ready` | \"x\" | `rust:integration::pod::pods_ready` |"),
         r"needs 4 cells", 0),
        ("a row that names no test", None, rows_with(1, "| `pods-ready` | \"x\" |  | y |"), r"names no test", 0),
    ]
    for name, files, rows, expect, n_untested in cases:
        if name == "an untested: row":
            # No problem of its own, but counted: main() fails on it unless allowed.
            run(files, rows, None, n_untested)
            with tempfile.TemporaryDirectory() as d:
                f = dict(FIXTURE)
                f[LEDGER] = LEDGER_HEAD + "\n".join(rows) + "\n"
                write_tree(d, f)
                devnull = open(os.devnull, "w")
                saved, sys.stdout = sys.stdout, devnull
                try:
                    os.environ.pop("EW_PROMISES_ALLOW_UNTESTED", None)
                    failed = main(d)
                    os.environ["EW_PROMISES_ALLOW_UNTESTED"] = "1"
                    allowed = main(d)
                finally:
                    os.environ.pop("EW_PROMISES_ALLOW_UNTESTED", None)
                    sys.stdout = saved
                    devnull.close()
                assert failed == 1, "an untested row must fail the check"
                assert allowed == 0, "EW_PROMISES_ALLOW_UNTESTED=1 reports untested rows without failing"
        else:
            run(files, rows, expect, n_untested)
        print(f"ok: {name}")
    print(f"promises self-test: {len(cases)} cases passed")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--self-test"]:
        sys.exit(self_test())
    root = Path(__file__).resolve().parent.parent
    if len(args) == 2 and args[0] == "--root":
        root = Path(args[1])
    elif args:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(root))

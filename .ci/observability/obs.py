"""Helpers of .ci/observability-checks.sh and bench/metrics-bandwidth.sh.

    obs.py pi-sysfs DEST
    obs.py dashboards DASH_DIR DATASOURCES_JSON
    obs.py names --series S.json --rules R.json --dashboards DIR [--exposition FILE]...
    obs.py rule-tests RULES_JSON TEST_YAML
    obs.py queries --series S.json --dashboards DIR --rules R.json [--exposition FILE]... --prom URL --since UNIX
    obs.py holes --prom URL --match SELECTOR --start UNIX --end UNIX --interval SECONDS
    obs.py wait-series --prom URL --query PROMQL [--timeout SECONDS]

Every subcommand prints what it checked and exits non-zero on a failure.
PromQL is parsed with promql-parser (the Rust parser of GreptimeDB, as used
by Prometheus-compatible servers), not with regular expressions.
"""

import argparse
import glob
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

# ---------------------------------------------------------------- Pi sysfs

# A Raspberry Pi 4's thermal, cpufreq and firmware files (Pi OS / NixOS
# vendor kernel layout, values as read on a Pi 4B at 1.5 GHz), laid over the
# real /sys of the test machine: node exporter's real thermal_zone and
# cpufreq collectors then run on them (--path.sysfs), so the metric names
# the dashboards use come from node exporter itself, not from this file.
PI4_SYSFS = {
    "class/thermal/thermal_zone0/type": "cpu-thermal\n",
    "class/thermal/thermal_zone0/temp": "48686\n",
    "class/thermal/thermal_zone0/policy": "step_wise\n",
    "class/thermal/thermal_zone0/mode": "enabled\n",
    "devices/platform/soc/soc:firmware/get_throttled": "0\n",
}
for _cpu in range(4):
    _d = f"devices/system/cpu/cpu{_cpu}/cpufreq/"
    for _name, _value in {
        "affected_cpus": "0 1 2 3", "related_cpus": "0 1 2 3",
        "cpuinfo_cur_freq": "1500000", "cpuinfo_max_freq": "1800000", "cpuinfo_min_freq": "600000",
        "cpuinfo_transition_latency": "355000", "scaling_cur_freq": "1500000",
        "scaling_max_freq": "1800000", "scaling_min_freq": "600000", "scaling_driver": "cpufreq-dt",
        "scaling_governor": "performance", "scaling_setspeed": "<unsupported>",
        "scaling_available_governors": "conservative ondemand userspace powersave performance schedutil",
    }.items():
        PI4_SYSFS[_d + _name] = _value + "\n"


def pi_sysfs(dest, real="/sys"):
    """Symlink farm of `real` with PI4_SYSFS written over it."""
    dirs = set()
    for path in PI4_SYSFS:
        parts = path.split("/")[:-1]
        for i in range(len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
        rd = os.path.join(real, d)
        if os.path.isdir(rd) and not os.path.islink(rd):
            for name in os.listdir(rd):
                rel = f"{d}/{name}" if d else name
                if rel in dirs or rel in PI4_SYSFS:
                    continue
                os.symlink(os.path.join(rd, name), os.path.join(dest, d, name))
    for path, value in PI4_SYSFS.items():
        with open(os.path.join(dest, path), "w") as f:
            f.write(value)
    print(f"pi-sysfs: {len(PI4_SYSFS)} Pi 4 files over {real} in {dest}")


# ---------------------------------------------------------------- PromQL

# Grafana's variables, substituted the way Grafana does for "All" (allValue
# ".*") and for a panel of a 6 h dashboard at 15 s resolution.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$node": ".*",
    "$camera": ".*",
}


def substitute(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    if "$" in expr.replace("$labels", "").replace("$value", ""):
        raise ValueError(f"unsubstituted variable in {expr!r}")
    return expr


def metric_names(expr):
    """Metric names a PromQL expression selects (parsed, not grepped)."""
    import promql_parser as p

    names = set()

    def walk(e):
        t = type(e).__name__
        if t == "VectorSelector":
            if e.name:
                names.add(e.name)
            for m in e.matchers.matchers:
                if m.name == "__name__":
                    names.add(m.value)
        elif t == "MatrixSelector":
            walk(e.vector_selector)
        elif t == "BinaryExpr":
            walk(e.lhs)
            walk(e.rhs)
        elif t in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
            walk(e.expr)
        elif t == "AggregateExpr":
            walk(e.expr)
            if e.param is not None:
                walk(e.param)
        elif t == "Call":
            for a in e.args:
                walk(a)
        elif t in ("NumberLiteral", "StringLiteral"):
            pass
        else:
            raise ValueError(f"unknown PromQL node {t}")

    walk(p.parse(expr))
    return names


def label_values_selector(query):
    """`label_values(SELECTOR, label)` (a Grafana variable) -> SELECTOR."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", query)
    if not m:
        raise ValueError(f"unsupported variable query {query!r}")
    return m.group(1)


# ---------------------------------------------------------------- dashboards

def load_dashboards(d):
    out = {}
    for path in sorted(glob.glob(os.path.join(d, "*.json"))):
        with open(path) as f:
            out[os.path.basename(path)] = json.load(f)
    if not out:
        raise SystemExit(f"no dashboards in {d}")
    return out


def dashboard_queries(dashboards):
    """(where, datasource type, raw expr) of every panel target and variable."""
    for fname, dash in dashboards.items():
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                yield f"{fname} variable ${v['name']}", v["datasource"]["type"], label_values_selector(q)
        for panel in dash["panels"]:
            for t in panel.get("targets", []):
                yield f"{fname} panel {panel['id']} \"{panel['title']}\" {t['refId']}", t["datasource"]["type"], t.get("expr", "")


def cmd_dashboards(args):
    with open(args.datasources) as f:
        ds = {d["uid"]: d["type"] for d in json.load(f)["datasources"]}
    errors = []
    dashboards = load_dashboards(args.dir)
    uids = set()
    panels = targets = 0
    for fname, dash in dashboards.items():
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in dash:
                errors.append(f"{fname}: no {key}")
        if dash.get("uid") in uids:
            errors.append(f"{fname}: duplicate uid {dash.get('uid')}")
        uids.add(dash.get("uid"))
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            errors.append(f"{fname}: duplicate panel ids")

        def check_ds(where, d):
            if not isinstance(d, dict) or d.get("uid") not in ds:
                errors.append(f"{where}: datasource {d!r} is not a provisioned uid ({sorted(ds)})")
            elif ds[d["uid"]] != d.get("type"):
                errors.append(f"{where}: datasource uid {d['uid']} has type {ds[d['uid']]}, not {d.get('type')}")

        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                check_ds(f"{fname} variable {v.get('name')}", v.get("datasource"))
        for p in dash.get("panels", []):
            where = f"{fname} panel {p.get('id')} {p.get('title')!r}"
            panels += 1
            if p.get("type") in ("row", "text"):
                errors.append(f"{where}: rows/text panels are not used (every panel must query)")
                continue
            for key in ("type", "title", "gridPos"):
                if not p.get(key):
                    errors.append(f"{where}: no {key}")
            check_ds(where, p.get("datasource"))
            ts = p.get("targets") or []
            if not ts:
                errors.append(f"{where}: no targets")
            refs = [t.get("refId") for t in ts]
            if len(refs) != len(set(refs)) or not all(refs):
                errors.append(f"{where}: refIds missing or duplicated")
            for t in ts:
                targets += 1
                check_ds(f"{where} {t.get('refId')}", t.get("datasource"))
                if not str(t.get("expr", "")).strip():
                    errors.append(f"{where} {t.get('refId')}: empty query")
                if (t.get("datasource") or {}).get("uid") != (p.get("datasource") or {}).get("uid"):
                    errors.append(f"{where} {t.get('refId')}: target datasource differs from the panel's")
    # Every Prometheus query must parse (after Grafana's substitutions).
    for where, dstype, expr in dashboard_queries(dashboards):
        if dstype == "prometheus":
            try:
                metric_names(substitute(expr))
            except Exception as e:  # noqa: BLE001 (report every bad query)
                errors.append(f"{where}: {e}")
    for e in errors:
        print("ERROR", e)
    print(f"dashboards: {len(dashboards)} dashboards, {panels} panels, {targets} queries; {len(errors)} problems")
    return 1 if errors else 0


# ---------------------------------------------------------------- names

def rule_exprs(rules):
    for g in rules["groups"]:
        for r in g["rules"]:
            yield f"rule {r.get('alert') or r.get('record')}", r["expr"]


def exposition_names(path):
    """Names of samples in an exposition, and the names its TYPE lines declare
    (Prometheus text or OpenMetrics, whose counter TYPE lines omit _total)."""
    samples, declared = set(), set()
    with open(path) as f:
        for line in f:
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(None, 3)
                typ = typ.strip()
                if typ == "counter":
                    base = name[: -len("_total")] if name.endswith("_total") else name
                    declared |= {base + "_total", base + "_created"}
                elif typ in ("histogram", "gaugehistogram"):
                    declared |= {name + "_bucket", name + "_sum", name + "_count"}
                elif typ == "summary":
                    declared |= {name, name + "_sum", name + "_count"}
                elif typ == "info":
                    declared.add(name if name.endswith("_info") else name + "_info")
                else:
                    declared.add(name)
            elif line.strip() and not line.startswith("#"):
                samples.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return samples, declared


def used_names(series, rules, dashboards):
    used = {}
    for where, dstype, expr in dashboard_queries(dashboards):
        if dstype == "prometheus":
            for n in metric_names(substitute(expr)):
                used.setdefault(n, []).append(where)
    for where, expr in rule_exprs(rules):
        for n in metric_names(expr):
            used.setdefault(n, []).append(where)
    return used


def kept_names(series):
    kept, pending = {}, set()
    for job, s in series.items():
        if job == "synthetic":
            for n in s:
                kept[n] = "synthetic"
            continue
        for n in s["metrics"]:
            kept[n] = job
            if s["pending"]:
                pending.add(n)
    return kept, pending


def cmd_names(args):
    series = json.load(open(args.series))
    rules = json.load(open(args.rules))
    dashboards = load_dashboards(args.dashboards)
    used = used_names(series, rules, dashboards)
    kept, pending = kept_names(series)
    errors = []
    for n in sorted(set(used) - set(kept)):
        errors.append(f"{n} is used ({used[n][0]}) but not kept by nix/lib/monitoring/series.nix: the node would drop it")
    for n in sorted(set(kept) - set(used)):
        errors.append(f"{n} is kept ({kept[n]}) but no dashboard or rule uses it: it costs bandwidth for nothing")
    samples, declared = set(), set()
    for path in args.exposition:
        s, d = exposition_names(path)
        print(f"names: {path}: {len(s)} sample names, {len(d)} declared")
        samples |= s
        declared |= d
    declared_only = []
    for n in sorted(used):
        if kept.get(n) == "synthetic" or n in pending:
            continue
        if n in samples:
            continue
        if n in declared:
            declared_only.append(n)
            continue
        errors.append(f"{n} (used by {used[n][0]}) is in no exposition: renamed or removed?")
    if declared_only:
        print("names: declared by a TYPE line but without a sample yet (labelled series not observed):", ", ".join(declared_only))
    print("names: pending, not checked (cAdvisor needs a kubelet):", ", ".join(sorted(pending & set(used))))
    for e in errors:
        print("ERROR", e)
    print(f"names: {len(used)} metric names used by {len(dashboards)} dashboards and {sum(len(g['rules']) for g in rules['groups'])} rules; "
          f"{len(kept)} kept; {len(pending & set(used))} pending; {len(errors)} problems")
    return 1 if errors else 0


# ---------------------------------------------------------------- rule tests

def cmd_rule_tests(args):
    import yaml

    rules = json.load(open(args.rules))
    tests = yaml.safe_load(open(args.tests))
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    fired, silent = set(), set()
    for t in tests["tests"]:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else silent).add(a["alertname"])
    errors = [f"alert {a} has no promtool test case in which it fires" for a in alerts if a not in fired]
    errors += [f"test of unknown alert {a}" for a in (fired | silent) - set(alerts)]
    for e in errors:
        print("ERROR", e)
    print(f"rule-tests: {len(alerts)} alerts, {len(fired & set(alerts))} with a firing case, {len(silent & set(alerts))} with a silent case; {len(errors)} problems")
    return 1 if errors else 0


# ---------------------------------------------------------------- HTTP API

def api(prom, path, params):
    url = f"{prom}/api/v1/{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def cmd_wait_series(args):
    deadline = time.time() + args.timeout
    while True:
        try:
            got = api(args.prom, "query", {"query": args.query})["result"]
            if got:
                print(f"wait-series: {args.query} -> {len(got)} series")
                return 0
        except Exception as e:  # noqa: BLE001 (server still starting)
            last = e
        if time.time() > deadline:
            print(f"wait-series: {args.query} returned nothing within {args.timeout} s ({locals().get('last', '')})")
            return 1
        time.sleep(2)


def cmd_queries(args):
    series = json.load(open(args.series))
    dashboards = load_dashboards(args.dashboards)
    _, pending = kept_names(series)
    samples, declared = set(), set()
    for path in args.exposition:
        s_, d_ = exposition_names(path)
        samples |= s_
        declared |= d_
    end = time.time()
    checked = skipped_pending = loki = 0
    errors, conditional = [], []
    items = list(dashboard_queries(dashboards))
    if args.rules:
        items += [(w, "prometheus", e) for w, e in rule_exprs(json.load(open(args.rules)))]

    def has_series(n):
        return bool(api(args.prom, "query", {"query": f'count({{__name__="{n}"}})'})["result"])

    for where, dstype, expr in items:
        if dstype == "loki":
            loki += 1
            continue
        q = substitute(expr)
        names = metric_names(q)
        if names & pending:
            skipped_pending += 1
            continue
        if where.startswith("rule "):
            # Alert conditions are false on a healthy node: check that the
            # series each rule reads are there instead.
            for n in sorted(names):
                checked += 1
                if has_series(n):
                    continue
                if n in samples | declared:
                    conditional.append(f"{where}: {n}")
                else:
                    errors.append(f"{where}: no series {n} on the central Prometheus")
            continue
        checked += 1
        if api(args.prom, "query_range", {"query": q, "start": args.since, "end": end, "step": "15"})["result"]:
            continue
        # A labelled counter (clip_write_failed_total{reason},
        # smtp_errors_total{class}) has no series until its first increment.
        # If the names check saw it on a process that had the event (the
        # full-spool detector, the watchdog whose relay is down), this query
        # only waits for an event here. Anything else is a failure.
        unseen = sorted(n for n in names if not has_series(n))
        if unseen and all(n in samples | declared for n in unseen):
            conditional.append(f"{where}: {', '.join(unseen)}")
        else:
            errors.append(f"{where}: no data for {q}")
    for c in conditional:
        print("NOTE no data yet, series not created until the first event:", c)
    for e in errors:
        print("ERROR", e)
    print(f"queries: {checked} checked against the central Prometheus (dashboard queries + the series every rule reads): "
          f"{checked - len(errors) - len(conditional)} with data, {len(conditional)} waiting for a first event, {len(errors)} failed; "
          f"{skipped_pending} pending (cAdvisor) and {loki} Loki queries not runnable here")
    return 1 if errors else 0


def cmd_holes(args):
    """Raw samples of every series matching SELECTOR in [start, end]: no gap
    longer than 1.5 scrape intervals, and every series spans the window."""
    window = int(args.end - args.start) + 1
    data = api(args.prom, "query", {"query": f"{args.match}[{window}s]", "time": args.end})["result"]
    errors = []
    total = 0
    max_gap = 0.0
    for s in data:
        ts = [float(t) for t, _ in s["values"]]
        total += len(ts)
        m = s["metric"]
        name = f"{m.get('__name__')}{{{','.join(f'{k}={v}' for k, v in sorted(m.items()) if k != '__name__')}}}"
        # A series created inside the window (a first labelled event) is
        # checked over its own span.
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        g = max(gaps, default=0.0)
        max_gap = max(max_gap, g)
        if g > 1.5 * args.interval:
            at = ts[gaps.index(g)]
            errors.append(f"{name}: {g:.1f} s without a sample after {time.strftime('%H:%M:%S', time.gmtime(at))}Z")
        if args.end - ts[-1] > 1.5 * args.interval + 5:
            errors.append(f"{name}: last sample {args.end - ts[-1]:.0f} s before the end of the window")
    if len(data) < args.min_series:
        errors.append(f"only {len(data)} series match {args.match}, expected at least {args.min_series}")
    for e in errors[:40]:
        print("ERROR", e)
    print(f"holes: {len(data)} series, {total} samples in {window} s (interval {args.interval} s); largest gap {max_gap:.1f} s; {len(errors)} series with a hole")
    return 1 if errors else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pi-sysfs")
    p.add_argument("dest")
    p = sub.add_parser("dashboards")
    p.add_argument("dir")
    p.add_argument("datasources")
    p = sub.add_parser("names")
    p.add_argument("--series", required=True)
    p.add_argument("--rules", required=True)
    p.add_argument("--dashboards", required=True)
    p.add_argument("--exposition", action="append", default=[])
    p = sub.add_parser("rule-tests")
    p.add_argument("rules")
    p.add_argument("tests")
    p = sub.add_parser("queries")
    p.add_argument("--series", required=True)
    p.add_argument("--dashboards", required=True)
    p.add_argument("--rules")
    p.add_argument("--exposition", action="append", default=[])
    p.add_argument("--prom", required=True)
    p.add_argument("--since", type=float, required=True)
    p = sub.add_parser("holes")
    p.add_argument("--prom", required=True)
    p.add_argument("--match", required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--min-series", type=int, default=1)
    p = sub.add_parser("wait-series")
    p.add_argument("--prom", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    if a.cmd == "pi-sysfs":
        pi_sysfs(a.dest)
        return 0
    return {"dashboards": cmd_dashboards, "names": cmd_names, "rule-tests": cmd_rule_tests,
            "queries": cmd_queries, "holes": cmd_holes, "wait-series": cmd_wait_series}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())

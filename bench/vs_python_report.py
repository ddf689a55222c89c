#!/usr/bin/env python3
"""The tables of bench/detect-vs-python.sh, from the run folder it fills (see that script).

Every figure is per round first (each ratio from one round's side-by-side runs), then the median
and [min-max] over the rounds. A row that did not run says why; none is dropped silently."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_reference import RESIZE, Sampler  # noqa: E402

PIPELINES = (("tract", "edgewatch detect, tract"), ("onnxruntime", "edgewatch detect, onnxruntime"),
             ("a", "(a) Python fused, window recomputed"), ("b", "(b) Python streaming (reference)"))
EDGEWATCH = ("tract", "onnxruntime")


def expected_inferred(frames: int, fps: float, sample_fps: float) -> int:
    s = Sampler(sample_fps)
    return sum(s.take(int(round(i * 1e9 / fps))) for i in range(frames))


def spread(xs, fmt="{:.2f}", unit=""):
    if not xs:
        return "-"
    f = lambda v: fmt.format(v)  # noqa: E731
    if len(xs) == 1:
        return f"{f(xs[0])}{unit}"
    return f"{f(statistics.median(xs))}{unit} [{f(min(xs))}-{f(max(xs))}]"


def time_file(p):
    user, sys_, maxkb = open(p).read().split()[-3:]
    return float(user) + float(sys_), int(maxkb) / 1024.0


def edgewatch_run(d, p, captured, inferred):
    cpu, rss = time_file(f"{d}/{p}.time")
    loaded = [json.loads(line) for line in open(f"{d}/{p}.log") if '"model loaded"' in line]
    if not loaded or loaded[0].get("startup_cpu_s") is None:
        sys.exit(f"error: no startup_cpu_s in {d}/{p}.log's 'model loaded' line")
    startup = float(loaded[0]["startup_cpu_s"])
    stopped = [json.loads(line) for line in open(f"{d}/{p}.log") if '"detector stopped"' in line]
    got = stopped[0].get("frames") if stopped else None
    if got is not None and int(got) != captured:
        sys.exit(f"error: {d}/{p}.log: edgewatch captured {got} frames, the video has {captured}")
    like = cpu - startup
    return raw(d, p, {"captured": captured / like, "inferred": inferred / like, "whole": inferred / cpu, "rss": rss,
            "cpu": cpu, "startup": startup})


RAW: list[str] = []


def raw(d, p, r):
    RAW.append(f"{d}/{p}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
    return r


def python_run(d, p, captured, inferred):
    r = json.loads(open(f"{d}/{p}.json").read().strip().splitlines()[-1])
    if r["decoded"] != captured or r["sampled"] != inferred:
        sys.exit(f"error: {d}/{p}.json: decoded {r['decoded']} / sampled {r['sampled']}, expected {captured} / "
                 f"{inferred}")
    _, rss = time_file(f"{d}/{p}.time")
    return raw(d, p, {"captured": captured / r["cpu_s"], "inferred": inferred / r["cpu_s"], "rss": rss,
                      "cpu": r["cpu_s"]})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--video-info", required=True)
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--modes", required=True)
    ap.add_argument("--ort-lib", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--skip-fused", default="")
    ap.add_argument("models", nargs="+", help="NAME=DIR (the shipped folder)")
    a = ap.parse_args()
    runs, frames = a.runs, a.frames
    int8 = [m.split("=", 1) for m in a.models if m.split("=", 1)[0].endswith("-int8")]
    models = [m.split("=", 1) for m in a.models if not m.split("=", 1)[0].endswith("-int8")]
    modes = a.modes.split()
    ort_why = open(f"{runs}/ort-why").read().strip()
    vfps = float(a.video_info.split()[-2])

    out = []
    say = out.append
    say(f"edgewatch detect vs the Python references: {a.video} ({a.video_info}, {frames} frames), "
        f"one inference thread each, {a.rounds} rounds")
    say(f"  binary: {a.bin}; onnxruntime library (edgewatch's onnxruntime backend and the references): {a.ort_lib}")
    say(f"  resize, both sides: {RESIZE}.")
    checks = [json.loads(line) for line in open(f"{runs}/resize.jsonl") if line.strip()]
    say(f"  resize check (bench/resize-check.sh), edgewatch's Preprocessor vs Pillow BILINEAR on the same "
        f"{checks[0]['frames']} decoded frames of the video: " + ", ".join(
            f"{r['size']} max |diff| {r['max_abs_diff']} grey level, {100 * r['share_differing']:.2f} % of values differ"
            for r in checks))
    say("  CPU: Python, time.process_time around the decode+inference loop (imports, model load not counted); "
        "edgewatch, process CPU minus the start-up CPU its 'model loaded' line reports (startup_cpu_s). Both "
        "include their first inference. Peak RSS: the kernel's peak for each whole process (/usr/bin/time %M), MiB.")
    say(f"  warm-up: every pipeline at least once per model before round 1, untimed (edgewatch and (b) in each "
        f"mode, (a) in one); rounds alternate the order "
        f"(tract, onnxruntime, (a), (b), then reversed). Figures: median [min-max] over the {a.rounds} rounds; each "
        f"ratio is taken within a round.")
    say("  models:")
    manifests = {}
    for name, d in models:
        with open(os.path.join(d, "manifest.toml"), "rb") as f:
            m = tomllib.load(f)
        manifests[name] = m
        size = sum(os.path.getsize(os.path.join(d, m[k]["file"])) for k in ("backbone", "head"))
        say(f"    {name:9s} {m['name']}: {m['input']['width']}x{m['input']['height']}, T={m['temporal']['window']}, "
            f"F={m['temporal']['feature-dim']}, {size / 1e6:.1f} MB of ONNX, backbone sha256 "
            f"{m['backbone']['sha256'][:12]}; {d}")

    # the warm-up's `edgewatch demo` summaries: captured and inferred, checked against the sampler
    problems = []
    mode_fps = {"every-frame": vfps}
    checks = [(mode, name) for mode in modes for name, _ in models] + [("every-frame", n) for n, _ in int8]
    for name, d in int8:
        with open(os.path.join(d, "manifest.toml"), "rb") as f:
            manifests[name] = tomllib.load(f)
    for mode, name in checks:
        if True:
            sfps = mode_fps.get(mode, manifests[name]["temporal"]["sample-fps"])
            want = expected_inferred(frames, vfps, sfps)
            for p in EDGEWATCH:
                f = f"{runs}/warmup/{mode}/{name}/{p}.demo"
                if not os.path.exists(f):
                    continue
                text = open(f).read()
                line = [x for x in text.splitlines() if "frames captured" in x]
                if not line:
                    problems.append(f"{f}: no summary")
                    continue
                w = line[0].split()
                cap, inf = int(w[2]), int(w[5])
                if (cap, inf) != (frames, want):
                    problems.append(f"{mode} {name} {p}: edgewatch demo captured {cap}, inferred {inf}; expected "
                                    f"{frames}, {want}")
    if problems:
        for p in problems:
            print("error:", p, file=sys.stderr)
        return 1

    least = []
    rss_worst = []
    for mode in modes:
        say("")
        if mode == "every-frame":
            say(f"== every-frame: each model's manifest copied with sample-fps = {vfps:g} (the video's rate); both sides "
                f"decode and infer all {frames} frames. Inferred frames per CPU-second. ==")
        else:
            inf_ex = {name: expected_inferred(frames, vfps, manifests[name]['temporal']['sample-fps'])
                      for name, _ in models}
            say(f"== production: the models as shipped ({', '.join(sorted({f'''{manifests[n]['temporal']['sample-fps']:g}''' for n, _ in models}))} "
                f"sampled frames/s, {', '.join(sorted(set(str(v) for v in inf_ex.values())))} of the {frames} frames inferred). "
                f"The Python references decode EVERY frame ({frames}), as an OpenCV camera loop must; edgewatch decodes "
                f"only the sampled frames and keeps the other JPEGs undecoded for clips. Both sides capture {frames} and "
                f"infer the same frames, so the ratio is the same for captured and inferred frames per CPU-second. ==")
        hdr = f"  {'model':9s} {'pipeline':36s}"
        if mode != "every-frame":
            hdr += f" {'captured/CPU-s':>20s}"
        hdr += f" {'inferred/CPU-s':>20s} {'vs (b)':>18s} {'whole process /(b)':>18s} {'peak RSS MiB':>18s} {'RSS vs (b)':>16s}"
        say(hdr)
        for name, _ in models:
            sfps = mode_fps.get(mode, manifests[name]["temporal"]["sample-fps"])
            inferred = expected_inferred(frames, vfps, sfps)
            per = {p: [] for p, _ in PIPELINES}
            for r in range(1, a.rounds + 1):
                d = f"{runs}/{r}/{mode}/{name}"
                for p, _ in PIPELINES:
                    if os.path.exists(f"{d}/{p}.time"):
                        per[p].append(edgewatch_run(d, p, frames, inferred) if p in EDGEWATCH
                                      else python_run(d, p, frames, inferred))
            b = per["b"]
            for p, label in PIPELINES:
                rs = per[p]
                if not rs:
                    why = {"onnxruntime": ort_why, "a": "BENCH_SKIP_FUSED is set"}.get(p, "no runs")
                    say(f"  {name:9s} {label:36s} not run: {why}")
                    continue
                row = f"  {name:9s} {label:36s}"
                if mode != "every-frame":
                    row += f" {spread([x['captured'] for x in rs], '{:.1f}'):>20s}"
                row += f" {spread([x['inferred'] for x in rs], '{:.1f}'):>20s}"
                if p == "b":
                    row += f" {'1':>18s} {'':>18s} {spread([x['rss'] for x in rs], '{:.1f}'):>18s} {'1':>16s}"
                else:
                    vs = [x["inferred"] / y["inferred"] for x, y in zip(rs, b)]
                    whole = [x["whole"] / y["inferred"] for x, y in zip(rs, b)] if p in EDGEWATCH else []
                    rss = [x["rss"] / y["rss"] for x, y in zip(rs, b)]
                    row += (f" {spread(vs, unit='x'):>18s} {spread(whole, unit='x'):>18s} "
                            f"{spread([x['rss'] for x in rs], '{:.1f}'):>18s} {spread(rss):>16s}")
                    if p in EDGEWATCH:
                        least.append((statistics.median(vs), min(vs), max(vs), name, p, mode))
                        rss_worst.append((statistics.median(rss), name, p, mode))
                say(row)
        if mode == "every-frame":
            startups = []
            for r in range(1, a.rounds + 1):
                for name, _ in models:
                    for p in EDGEWATCH:
                        f = f"{runs}/{r}/{mode}/{name}/{p}.log"
                        if os.path.exists(f):
                            startups += [json.loads(x)["startup_cpu_s"] for x in open(f) if '"model loaded"' in x]
            if startups:
                say(f"  (edgewatch's start-up, subtracted above: {min(startups):.2f}-{max(startups):.2f} CPU-s per run; "
                    f"'whole process' counts it)")

    if int8 and "every-frame" in modes:
        say("")
        say(f"== optional lever, NOT like for like: int8 (the backbone quantised to QDQ int8, static MinMax "
            f"calibration on 200 frames of synthetic clips, head float; `python -m edgewatch_model quantize`), "
            f"every-frame mode, in the same rounds. 'vs float (b)' divides by the same round's float (b) above; "
            f"'vs float, same engine' by the same pipeline on the float model. ==")
        say(f"  {'model':13s} {'pipeline':38s} {'inferred/CPU-s':>22s} {'vs float (b)':>20s} "
            f"{'vs float, same engine':>22s} {'peak RSS MiB':>20s}")
        for name, d in int8:
            base = name[:-len("-int8")]
            inferred = expected_inferred(frames, vfps, vfps)
            for p, label in PIPELINES:
                if p == "a":
                    continue
                rs, fb, fs = [], [], []
                for r in range(1, a.rounds + 1):
                    di, df = f"{runs}/{r}/every-frame/{base}-int8", f"{runs}/{r}/every-frame/{base}"
                    if not os.path.exists(f"{di}/{p}.time"):
                        continue
                    run = edgewatch_run if p in EDGEWATCH else python_run
                    rs.append(run(di, p, frames, inferred))
                    fb.append(python_run(df, "b", frames, inferred))
                    fs.append(run(df, p, frames, inferred) if os.path.exists(f"{df}/{p}.time") else None)
                if not rs:
                    say(f"  {name:13s} {label.replace(' (reference)', '') + ' int8':38s} not run: {ort_why if p == 'onnxruntime' else 'no runs'}")
                    continue
                vs_b = [x["inferred"] / y["inferred"] for x, y in zip(rs, fb)]
                vs_same = [x["inferred"] / y["inferred"] for x, y in zip(rs, fs) if y]
                say(f"  {name:13s} {label.replace(' (reference)', '') + ' int8':38s} {spread([x['inferred'] for x in rs], '{:.1f}'):>22s} "
                    f"{spread(vs_b, unit='x'):>20s} {spread(vs_same, unit='x'):>22s} "
                    f"{spread([x['rss'] for x in rs], '{:.1f}'):>20s}")
            q = f"{d}.quantize.json"
            if os.path.exists(q):
                r = json.load(open(q))
                ev = r.get("eval")
                trained = "UNTRAINED" not in manifests[base]["description"]
                if ev:
                    f, i = ev["float"], ev["int8"]
                    note = "" if trained else " (untrained random weights: chance either way; the change shows how far int8 moves its decisions)"
                    say(f"  {'':13s} accuracy change on the evaluation set ({len(f['per_clip'])} clips of `synth --val 100 "
                        f"--seed 1`, threshold {f['threshold']:g}){note}:")
                    for what in ("windows", "clips"):
                        fa, ia = f[what], i[what]
                        auc_f, auc_i = f[what + "_auc"], i[what + "_auc"]
                        auc = "n/a" if auc_f is None or auc_i is None else f"{auc_f:.4f} -> {auc_i:.4f}"
                        say(f"  {'':13s}   {what:7s}: accuracy {fa['accuracy']:.4f} -> {ia['accuracy']:.4f} "
                            f"({100 * (ia['accuracy'] - fa['accuracy']):+.1f} points), F1 {fa['f1']:.4f} -> "
                            f"{ia['f1']:.4f}, ROC-AUC {auc}")
                say(f"  {'':13s}   sample windows, max |score float - int8|: {r['max_sample_diff']:.2e}; backbone "
                    f"{r['backbone_bytes'] / 1e6:.1f} MB, ops {', '.join(r['ops'])}")
            else:
                say(f"  {'':13s} (no quantize report at {q})")

    head = []
    if least:
        lo = min(least)
        head.append(f"LEAST FLATTERING: edgewatch/(b) {lo[0]:.2f}x (median; rounds {lo[1]:.2f}-{lo[2]:.2f}x): "
                    f"edgewatch {lo[4]}, {lo[3]}, {lo[5]} mode, the smallest median ratio of inferred frames per "
                    f"CPU-second over the models, engines and modes below. (b) is a short Python script: OpenCV "
                    f"decode + onnxruntime, streaming.")
        by = {}
        for med, _mn, _mx, name, p, mode in least:
            by.setdefault((p, mode), []).append(f"{name} {med:.2f}x")
        for (p, mode), xs in sorted(by.items(), key=lambda kv: (kv[0][1] != "every-frame", kv[0][0])):
            head.append(f"  edgewatch {p:11s} / (b), {mode:11s}: {', '.join(xs)}")
        hi = max(rss_worst)
        head.append(f"  largest peak RSS ratio edgewatch/(b): {hi[0]:.2f} (edgewatch {hi[2]}, {hi[1]}, {hi[3]})")
    print("\n".join(head + [""] + out))
    with open(f"{runs}/runs.txt", "w") as f:
        f.write("\n".join(sorted(set(RAW))) + "\n")
    print(f"\n(every run's figures: {runs}/runs.txt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

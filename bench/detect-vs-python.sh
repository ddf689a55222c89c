#!/usr/bin/env bash
# Issue 4's side-by-side: `edgewatch detect` against the two Python references of
# bench/python_reference.py on the same video, the same weights and one inference thread each:
#   (a) the published deployment: the fused model over a sliding window recomputed every step;
#   (b) the best Python streaming pipeline: backbone per frame, head over a ring (onnxruntime).
# Prints decoded frames per CPU-second and peak RSS of each, and the ratios.
#
# edgewatch runs its file source as fast as it goes without skipping inference (a non-realtime
# source waits for inference), with the decision threshold at 1 so that no clip is encoded (the
# references encode nothing either). The references count the CPU of their decode+inference
# loop only (not imports or model load). edgewatch's CPU is given twice: for the whole process,
# and after start-up (the process CPU its "model loaded" log line reports, start-up, model
# verification and graph optimisation, subtracted), which counts what the references count.
# The ratios against the targets are the like-for-like ones; the whole-process ratios are
# printed beside them. edgewatch decodes only the sampled frames (it keeps the camera's JPEGs
# for clips), the references decode every frame as an OpenCV camera loop does: that difference is
# part of the design being measured.
# edgewatch runs three times: with tract (the default, what the Pi runs), with tract and
# `model.channels-last = false` (the backbone as exported, with tract's own optimisations only:
# the rewrite's own effect), and
# with the onnxruntime backend (the same library as the references, from the model venv's wheel).
# The four run one after the other, ROUNDS times (default 3); each round prints its figures and
# ratios, and the last lines give the median ratio over the rounds: on a shared 2-core VM one
# round alone has swung by a third.
# BENCH_BASELINE_BIN=/path/to/another/edgewatch adds a fifth run, that binary with tract, and
# the ratio of this build's tract to it: a change's own effect, side by side in the same rounds.
# Usage: bench/detect-vs-python.sh [LOOPS (default 5: the 24 s demo video 5 times, 1800 frames)] [ROUNDS]
# Needs model/run-tests.sh's venv (onnxruntime, OpenCV).
source "$(dirname "$0")/lib.sh"
LOOPS=${1:-5}
ROUNDS=${2:-3}
PY=${EW_MODEL_PYTHON:-/opt/edgewatch-model-venv/bin/python}
[ -x "$PY" ] || { echo "no $PY: run model/run-tests.sh once (it makes the venv)" >&2; exit 1; }
[ -n "${EW_BIN:-}" ] || (cd "$ROOT" && cargo build --release --locked --quiet --features onnxruntime)
ORT_LIB=$(ls "$(dirname "$PY")"/../lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)
VID="$WORK/demo-x$LOOPS.avi"
[ -f "$VID" ] || ffmpeg -hide_banner -loglevel error -y -stream_loop $((LOOPS - 1)) -i "$ROOT/demo/demo.avi" -c copy "$VID"
RUNS=$(mktemp -d "$WORK/vs-python.XXXX")
# A non-looping fast file source delivers every frame of the file.
frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$VID")
# detect BACKEND: runs edgewatch to the end of the file; writes $RUN/BACKEND.time ("user sys maxrss_kb").
detect() {
  local conf="$RUN/$1.toml"
  config "$conf" "$VID" fast false "$(free_port)" "$RUN/spool-$1"
  # model.threads defaults to 1. Threshold 1: no events, so no clips are encoded.
  printf '[decision]\nthreshold = 1.0\n' >> "$conf"
  if [ "$1" = onnxruntime ]; then
    sed -i "s|^\[model\]|[model]\nbackend = \"onnxruntime\"\nonnxruntime-library = \"$ORT_LIB\"|" "$conf"
  fi
  # The channels-last rewrite's own effect: tract running the backbone as exported.
  if [ "$1" = tract-nchw ]; then
    sed -i "s|^\[model\]|[model]\nchannels-last = false|" "$conf"
  fi
  local bin=$BIN
  [ "$1" = tract-baseline ] && bin=$BENCH_BASELINE_BIN
  /usr/bin/time -f "%U %S %M" -o "$RUN/$1.time" "$bin" --config "$conf" detect > "$RUN/$1.log" 2>&1
}
ort_ok=1
for round in $(seq 1 "$ROUNDS"); do
  RUN="$RUNS/$round"
  mkdir -p "$RUN"
  detect tract
  if [ -n "${BENCH_BASELINE_BIN:-}" ]; then detect tract-baseline; fi
  detect tract-nchw
  if [ $round = 1 ]; then
    EDGEWATCH_MODEL__BACKEND=onnxruntime "$BIN" check-config "$RUN/tract.toml" > /dev/null 2>&1 || ort_ok=0
  fi
  if [ $ort_ok = 1 ]; then detect onnxruntime; fi
  "$PY" "$ROOT/bench/python_reference.py" "$VID" "$ROOT/model/demo" --mode fused --json > "$RUN/a.json"
  "$PY" "$ROOT/bench/python_reference.py" "$VID" "$ROOT/model/demo" --mode stream --json > "$RUN/b.json"
done
"$PY" - "$RUNS" "$frames" "$ROUNDS" <<'PY'
import json, os, statistics, sys
runs, frames, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def last_json(p):
    return json.loads(open(p).read().strip().splitlines()[-1])
def spread(xs, unit=""):
    return f"{statistics.median(xs):.2f}{unit} [{min(xs):.2f}-{max(xs):.2f}]"
ratios = {}
channels_last, vs_baseline = [], []
for r in range(1, rounds + 1):
    run = f"{runs}/{r}"
    a, b = last_json(f"{run}/a.json"), last_json(f"{run}/b.json")
    print(f"detect vs Python references, round {r} of {rounds}: {a['video']} ({frames} frames), model/demo, one inference thread each")
    rows = []
    for backend in ("tract", "tract-baseline", "tract-nchw", "onnxruntime"):
        p = f"{run}/{backend}.time"
        if backend == "tract-baseline" and not os.path.exists(p):
            continue
        if not os.path.exists(p):
            print(f"  edgewatch detect ({backend}): not run (binary built without the onnxruntime feature)")
            continue
        user, sys_, maxkb = open(p).read().split()
        cpu = float(user) + float(sys_)
        loaded = [json.loads(l) for l in open(f"{run}/{backend}.log") if '"model loaded"' in l]
        startup = loaded[0].get("startup_cpu_s") if loaded else None
        if startup is None:
            sys.exit(f"error: no startup_cpu_s in {run}/{backend}.log's 'model loaded' line")
        e = {"fps": frames / (cpu - startup), "whole": frames / cpu, "rss": int(maxkb) / 1024}
        rows.append((backend, e))
        dw = loaded[0].get("depthwise_kernel", "not logged")
        print(f"  edgewatch detect ({backend + '):':<16} {e['fps']:7.1f} frames/CPU-s after start-up, {e['whole']:7.1f} whole process "
              f"({cpu:.2f} CPU-s, {startup:.2f} of them start-up)  peak RSS {e['rss']:6.1f} MB  depthwise kernel: {dw}")
    print(f"  (a) Python fused sliding window:   {a['frames_per_cpu_s']:7.1f} frames/CPU-s  peak RSS {a['peak_rss_mb']:6.1f} MB")
    print(f"  (b) Python streaming onnxruntime:  {b['frames_per_cpu_s']:7.1f} frames/CPU-s  peak RSS {b['peak_rss_mb']:6.1f} MB")
    fps = dict((k, e['fps']) for k, e in rows)
    if "tract-nchw" in fps:
        channels_last.append(fps["tract"] / fps["tract-nchw"])
        print(f"  channels-last (tract's default) vs the backbone as exported: {fps['tract'] / fps['tract-nchw']:.2f}x frames per CPU-second")
    if "tract-baseline" in fps:
        vs_baseline.append(fps["tract"] / fps["tract-baseline"])
        print(f"  this build vs BENCH_BASELINE_BIN (tract): {fps['tract'] / fps['tract-baseline']:.2f}x frames per CPU-second")
    for backend, e in rows:
        q = (e['fps'] / a['frames_per_cpu_s'], e['fps'] / b['frames_per_cpu_s'], e['rss'] / b['peak_rss_mb'],
             e['whole'] / a['frames_per_cpu_s'], e['whole'] / b['frames_per_cpu_s'])
        ratios.setdefault(backend, []).append(q)
        print(f"  {backend}: edgewatch/(a) {q[0]:.2f}x (target >= 5x), edgewatch/(b) {q[1]:.2f}x (target >= 1x) frames per CPU-second; "
              f"RSS edgewatch/(b) {q[2]:.2f} (target <= 0.5); whole process: /(a) {q[3]:.2f}x, /(b) {q[4]:.2f}x")
print(f"median over {rounds} rounds (each ratio from one round's side-by-side runs):")
if channels_last:
    print(f"  channels-last vs as exported (tract): {spread(channels_last, 'x')} frames per CPU-second")
if vs_baseline:
    print(f"  this build vs BENCH_BASELINE_BIN (tract): {spread(vs_baseline, 'x')} frames per CPU-second")
for backend, qs in ratios.items():
    vs_a, vs_b, rss, whole_a, whole_b = ([q[i] for q in qs] for i in range(5))
    print(f"  {backend}: edgewatch/(a) {spread(vs_a, 'x')} (target >= 5x), "
          f"edgewatch/(b) {spread(vs_b, 'x')} (target >= 1x); "
          f"RSS edgewatch/(b) {spread(rss)} (target <= 0.5); "
          f"whole process: /(a) {spread(whole_a, 'x')}, /(b) {spread(whole_b, 'x')}")
PY

#!/usr/bin/env bash
# Motion gating (#26), gated against ungated, side by side in one run.
#
# A 260 s 640x480 MJPEG fixture made here with ffmpeg: 120 s of a still scene with sensor noise
# (a grey grid, temporal noise of sigma about 4 grey levels), 10 s of the demo video's fight,
# 60 s still, a 10 s walk-through (a person-sized block crossing, no fight), 60 s still. Also
# the 120 s still part alone, for the still-scene figure. `edgewatch detect` runs each with
# `pace = "fast"` (CPU, not wall time, is measured), gating off, on (the defaults) and on with each
# setting in BENCH_VARIANTS, ROUNDS rounds alternating the order. Models: the demo
# model; a width-1.0 MobileNetV2 at 224 from `init --seed 7` (untrained: its head scores a still
# scene high, which holds the gate open by design); and the same size with its head trained on
# `synth` clips (backbone left untrained, `train --frame-epochs 0`), so that a still scene scores
# low and the gate can shut. Printed: CPU-seconds per minute of video (process user+system, minus
# the model load that the "model loaded" line reports), backbone runs, events and their times.
#
#   bench/motion-gating.sh [ROUNDS (default 3)]
#   BENCH_MODELS="demo w1.0-224 w1.0-224-head" (default),
#   BENCH_VARIANTS="max-skip=3s near-decision=1.0 near-decision=1.0,max-skip=3s" (default; "" for
#   none): extra gated rows, each a comma-separated list of [motion] settings
# Needs ffmpeg, /usr/bin/time and, for the width-1.0 models, model/run-tests.sh's venv (the
# trained head takes a few CPU-minutes and about 6 GB of memory once; it is cached in $WORK).
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
MODELS=${BENCH_MODELS:-demo w1.0-224 w1.0-224-head}
VARIANTS="off on ${BENCH_VARIANTS-max-skip=3s near-decision=1.0 near-decision=1.0,max-skip=3s}"
PY=${EW_MODEL_PYTHON:-/opt/edgewatch-model-venv/bin/python}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }
build

mk() { # mk OUT SECONDS [walker]
  local graph="color=c=0x505050:s=640x480:r=15:d=$2,drawgrid=w=64:h=48:t=2:c=0x303030"
  if [ "${3:-}" = walker ]; then
    graph="${graph}[bg];color=c=0xd0d0d0:s=40x100:r=15[box];[bg][box]overlay=x='-40+t*70':y=190:eval=frame:shortest=1"
  fi
  ffmpeg -v error -y -f lavfi -i "$graph,noise=alls=7:allf=t" -c:v mjpeg -q:v 5 -pix_fmt yuvj422p "$1"
}
STILL="$WORK/motion-still-120s.avi"
WHOLE="$WORK/motion-260s.avi"
if [ ! -f "$WHOLE" ]; then
  echo "making the fixtures under $WORK ..." >&2
  mk "$STILL" 120; mk "$WORK/motion-still-60s.avi" 60; mk "$WORK/motion-walk-10s.avi" 10 walker
  # The demo video's fight (8 s to 18 s), re-encoded like the rest.
  ffmpeg -v error -y -ss 8 -t 10 -i "$ROOT/demo/demo.avi" -c:v mjpeg -q:v 5 -pix_fmt yuvj422p -r 15 "$WORK/motion-fight-10s.avi"
  printf "file '%s'\n" "$STILL" "$WORK/motion-fight-10s.avi" "$WORK/motion-still-60s.avi" "$WORK/motion-walk-10s.avi" \
    "$WORK/motion-still-60s.avi" > "$WORK/motion-list.txt"
  ffmpeg -v error -y -f concat -safe 0 -i "$WORK/motion-list.txt" -c copy "$WHOLE"
fi

model_dir() {
  case $1 in
    w1.0-224-head)
      local out="$WORK/models/mbv2-w1.0-224-head-seed7"
      if [ ! -f "$out/manifest.toml" ]; then
        mkdir -p "$WORK/models"
        (cd "$ROOT/model" \
          && { [ -d "$WORK/synth-40" ] || "$PY" -m edgewatch_model synth "$WORK/synth-40" --train 40 --val 10 --seed 1; } \
          && "$PY" -m edgewatch_model train "$WORK/synth-40" "$out.run" --size 224 --width-mult 1.0 --window 16 \
            --sample-fps 5 --hidden 32 --frame-epochs 0 --head-epochs 10 --seed 7 \
          && "$PY" -m edgewatch_model export "$out.run/best.ckpt.npz" "$out" --name edgewatch-bench-mbv2-1-224-head-seed7 \
            --description "BENCH MODEL: MobileNetV2 x1.0 at 224, backbone untrained (seed 7), BiLSTM head trained 10 epochs on synth clips" \
          > "$out.log" 2>&1) || { cat "$out.log" >&2; exit 1; }
      fi
      echo "$out" ;;
    *) bench_model "$1" ;;
  esac
}

RUNS=$(mktemp -d "$WORK/motion-gating.XXXX")
run() { # run OUT_PREFIX VIDEO MODEL_DIR VARIANT (off, on or KEY=VALUE[,KEY=VALUE...])
  config "$1.toml" "$2" fast false "$(free_port)" "$1-spool" "$3"
  {
    printf '[motion]\nenabled = %s\n' "$([ "$4" = off ] && echo false || echo true)"
    case $4 in off | on) ;; *)
      local kv
      for kv in ${4//,/ }; do
        case ${kv%%=*} in
          max-skip) printf '%s = "%s"\n' "${kv%%=*}" "${kv#*=}" ;;
          *) printf '%s = %s\n' "${kv%%=*}" "${kv#*=}" ;;
        esac
      done ;;
    esac
  } >> "$1.toml"
  sed -i "s|^\[model\]|[model]\nbackend = \"tract\"|" "$1.toml"
  /usr/bin/time -f "%U %S" -o "$1.time" "$BIN" --config "$1.toml" detect > "$1.log" 2>&1 \
    || { echo "edgewatch failed, see $1.log" >&2; tail -3 "$1.log" >&2; exit 1; }
}
order=$VARIANTS
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS ..." >&2
  for name in $MODELS; do
    m=$(model_dir "$name")
    for g in $order; do
      run "$RUNS/$name-whole-$g-$round" "$WHOLE" "$m" "$g"
      run "$RUNS/$name-still-$g-$round" "$STILL" "$m" "$g"
    done
  done
  order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ' | sed 's/ $//')
done

python3 - "$RUNS" "$ROUNDS" "$MODELS" "$VARIANTS" <<'PY'
import json, statistics, sys
runs, rounds, models, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
def one(prefix):
    user, sys_ = map(float, open(prefix + ".time").read().split()[-2:])
    startup, stopped, events = 0.0, {}, []
    for line in open(prefix + ".log"):
        try: j = json.loads(line)
        except ValueError: continue
        f = j.get("fields", j)
        msg = f.get("message", "")
        if msg == "model loaded": startup = float(f.get("startup_cpu_s", 0))
        if msg == "detector stopped": stopped = f
        if msg == "event started": events.append(float(f["at"]))
    return {"cpu": user + sys_ - startup, "runs": int(stopped.get("backbone_runs", -1)),
            "inferred": int(stopped.get("inferred", -1)), "events": events}
def med(xs): return statistics.median(xs), min(xs), max(xs)
print(f"motion gating benchmark: {rounds} rounds alternating, tract, 1 thread, pace = fast; CPU = user+sys minus model load")
print("  video: 260 s = 120 s still + 10 s fight (demo video) + 60 s still + 10 s walk-through + 60 s still; still part alone: 120 s")
for name in models:
    print(f"  model {name}:")
    res = {}
    for part, minutes in (("still", 2.0), ("whole", 260 / 60)):
        for v in variants:
            rs = [one(f"{runs}/{name}-{part}-{v}-{r}") for r in range(1, rounds + 1)]
            res[(part, v)] = rs
            c = med([r["cpu"] / minutes for r in rs])
            label = {"off": "gating off", "on": "gating on (defaults)"}.get(v) or "on, " + v
            print(f"    {part:5} {label:40}: {c[0]:7.2f} CPU-s per minute of video [{c[1]:.2f}-{c[2]:.2f}], "
                  f"backbone runs {rs[0]['runs']} of {rs[0]['inferred']} sampled, events at {rs[0]['events']}")
        off = [r["cpu"] for r in res[(part, "off")]]
        for v in variants[1:]:
            on = [r["cpu"] for r in res[(part, v)]]
            ratios = sorted(a / b for a, b in zip(on, off))
            label = "gated" if v == "on" else v
            print(f"    {part:5} {label}/ungated CPU: {statistics.median(ratios):.3f} [{ratios[0]:.3f}-{ratios[-1]:.3f}]")
    for v in variants[1:]:
        same = all(len(a["events"]) == len(b["events"]) and all(abs(x - y) <= 0.2 + 1e-3 for x, y in zip(a["events"], b["events"]))
                   for a, b in zip(res[("whole", "off")], res[("whole", v)]))
        print(f"    same events, {v} and off (within one sampled frame): {'yes' if same else 'NO'}")
PY

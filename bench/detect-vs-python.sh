#!/usr/bin/env bash
# `edgewatch detect` against the two Python references of bench/python_reference.py (issue 21,
# item 1: the like-for-like benchmark). One invocation runs, for each of three models,
#   w1.0-112   MobileNetV2 width 1.0, 112x112, T = 16, + BiLSTM: untrained, seeded random weights
#              (`python -m edgewatch_model init --width-mult 1.0 --size 112 --seed 7`)
#   w1.0-224   the same at 224x224
#   demo       model/demo, the shipped width-0.35 112x112 demo model
# four pipelines on the same video and the same weights, one inference thread each:
#   edgewatch tract         `edgewatch detect` with `model.backend = "tract"` (what the default, "auto",
#                           runs without an onnxruntime library)
#   edgewatch onnxruntime   `edgewatch detect` with `model.backend = "onnxruntime"` and the model
#                           venv's own libonnxruntime (the library the references use)
#   (a) Python fused        OpenCV decode, the fused model over a sliding window recomputed per step
#   (b) Python streaming    OpenCV decode, onnxruntime: backbone per frame + head over a ring
# in two modes:
#   every-frame  a copy of each model whose manifest says sample-fps = the video's rate, so both
#                sides decode and infer the same frames: inferred frames per CPU-second.
#   production   the models as shipped (5 sampled frames/s). edgewatch decodes only the sampled
#                frames (it keeps the camera's JPEGs for clips); the Python references decode every
#                frame, as an OpenCV camera loop must. Both captured and inferred frames per
#                CPU-second are given.
# Same resize on both sides: the whole frame to the model's WxH with a bilinear convolution
# (fast_image_resize Convolution(Bilinear) in edgewatch, Pillow BILINEAR in the references: the
# same algorithm; bench/resize-check.sh, run first, checks that edgewatch's own resize code and
# Pillow agree within 1 grey level on the same decoded pixels at each model size).
#
# CPU counted, like for like: the references time their decode+inference loop with
# time.process_time (imports and model load not counted); edgewatch's process CPU minus the
# start-up CPU its "model loaded" log line reports (`startup_cpu_s`: start-up, model verification,
# graph optimisation). Both include their first inference. Peak RSS is the kernel's figure for each
# whole process (/usr/bin/time %M, wait4's ru_maxrss). Before round 1, every pipeline runs at least
# once untimed on every model (warm-up: page cache, lazy loading; edgewatch's warm-up runs through
# `edgewatch demo` in each mode, whose summary gives the captured and inferred counts the bench
# checks; (b) runs in each mode, (a) in one).
# Then ROUNDS rounds (default 3); each round runs the pipelines one after the other, in the
# opposite order every other round. Each ratio is taken within a round; the tables give the median
# and [min-max] over the rounds.
#
# Optional lever, never in the like-for-like rows: an int8 variant of each model (the backbone in
# QDQ form, static MinMax calibration on 200 frames of synthetic clips, made by
# `python -m edgewatch_model quantize`), run in every-frame mode in the same rounds by edgewatch
# (tract, onnxruntime) and by (b), in a separate table, against the same round's float (b), with
# its accuracy change on the tooling's evaluation set (`synth --train 0 --val 100 --seed 1`: the
# demo model's own validation clips, 200 of them) beside it. BENCH_INT8=0 leaves it out.
#
# Usage: bench/detect-vs-python.sh [LOOPS (default 1: demo/demo.avi, 640x480 MJPEG, 15 fps, 360 frames)] [ROUNDS (default 3)]
#   EW_BIN=PATH             the edgewatch binary (default: build target/release/edgewatch with onnxruntime)
#   BENCH_MODELS="w1.0-112 w1.0-224 demo"   a subset of the models
#   BENCH_MODES="every-frame production"    a subset of the modes
#   BENCH_SKIP_FUSED=1      skip (a) (its every-frame run at 224 is the longest part); the table says so
#   BENCH_INT8=0            leave out the int8 lever
# Needs model/run-tests.sh's venv (onnxruntime, OpenCV, Pillow, JAX for `init`), ffmpeg, /usr/bin/time.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
LOOPS=${1:-1}
ROUNDS=${2:-3}
MODELS=${BENCH_MODELS:-w1.0-112 w1.0-224 demo}
MODES=${BENCH_MODES:-every-frame production}
INT8=${BENCH_INT8:-1}
PY=${EW_MODEL_PYTHON:-/opt/edgewatch-model-venv/bin/python}
[ -x "$PY" ] || { echo "no $PY: run model/run-tests.sh once (it makes the venv)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }
[ -n "${EW_BIN:-}" ] || (cd "$ROOT" && cargo build --release --locked --quiet --features onnxruntime)
ORT_LIB=$(venv_ort_lib "$PY")
export OPENCV_FFMPEG_CAPTURE_OPTIONS="threads;1" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# The video: demo/demo.avi (640x480 MJPEG, 15 fps), LOOPS times.
VID="$ROOT/demo/demo.avi"
if [ "$LOOPS" -gt 1 ]; then
  VID="$WORK/demo-x$LOOPS.avi"
  [ -f "$VID" ] || ffmpeg -hide_banner -loglevel error -y -stream_loop $((LOOPS - 1)) -i "$ROOT/demo/demo.avi" -c copy "$VID"
fi
read -r vcodec vw vh vrate < <(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height,r_frame_rate -of csv=p=0 "$VID" | tr ',' ' ')
frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$VID")
vfps=$(awk -v r="$vrate" 'BEGIN { split(r, a, "/"); printf "%g", a[1] / (a[2] ? a[2] : 1) }')

# The models, made once and cached under the bench work dir (same arguments, same bytes).
MODELS_DIR="$WORK/models"
mkdir -p "$MODELS_DIR"
# The evaluation set for the int8 lever's accuracy change: the demo model's validation clips.
EVALSET="$WORK/evalset-synth-seed1-val100"
evalset() {
  if [ ! -f "$EVALSET/.done" ]; then
    rm -rf "$EVALSET"
    echo "making $EVALSET: python -m edgewatch_model synth --train 0 --val 100 --seed 1" >&2
    (cd "$ROOT/model" && "$PY" -m edgewatch_model synth "$EVALSET" --train 0 --val 100 --seed 1 > /dev/null) || exit 1
    touch "$EVALSET/.done"
  fi
}
# int8_dir NAME: the int8 variant of model NAME, with its evaluation (quantize --eval), cached.
int8_dir() {
  local base="${1%-int8}" src out args
  src=$(bench_model "$base"); out="$MODELS_DIR/$base-int8"
  args="quantize --frames 200 --method minmax --seed 0 --eval $EVALSET --split val $(sha256sum < "$src/manifest.toml" | cut -c1-16)"
  if [ ! -f "$out/manifest.toml" ] || [ "$(cat "$out/.args" 2>/dev/null)" != "$args" ]; then
    evalset; rm -rf "$out"
    echo "making $out: python -m edgewatch_model quantize $src $out --eval $EVALSET" >&2
    (cd "$ROOT/model" && "$PY" -m edgewatch_model quantize "$src" "$out" --frames 200 --method minmax --seed 0 \
      --eval "$EVALSET" --split val --json "$out.quantize.json" > "$out.log" 2>&1) || { cat "$out.log" >&2; exit 1; }
    echo "$args" > "$out/.args"
  fi
  echo "$out"
}
# every_frame_dir NAME: a copy whose manifest samples at the video's rate (lib.sh).
every_frame_dir() {
  local src
  case $1 in *-int8) src=$(int8_dir "$1") ;; *) src=$(bench_model "$1") ;; esac
  every_frame_model "$src" "$1" "$vfps"
}
dir_for() { # dir_for MODE NAME
  if [ "$1" = every-frame ]; then every_frame_dir "$2"; else bench_model "$2"; fi
}
for name in $MODELS; do for mode in $MODES; do dir_for "$mode" "$name" > /dev/null; done; done
int8_models=""
if [ "$INT8" != 0 ] && [[ " $MODES " == *" every-frame "* ]]; then
  for name in $MODELS; do int8_models+=" $name-int8"; every_frame_dir "$name-int8" > /dev/null; done
fi

RUNS=$(mktemp -d "$WORK/vs-python.XXXX")
ort_ok=1; ort_why=""
if [ -z "$ORT_LIB" ]; then
  ort_ok=0; ort_why="no libonnxruntime in the model venv"
else
  config "$RUNS/probe.toml" "$VID" fast false "$(free_port)" "$RUNS/spool-probe"
  EDGEWATCH_MODEL__BACKEND=onnxruntime EDGEWATCH_MODEL__ONNXRUNTIME_LIBRARY="$ORT_LIB" "$BIN" check-config "$RUNS/probe.toml" > "$RUNS/probe.log" 2>&1 \
    || { ort_ok=0; ort_why="$BIN refuses model.backend = \"onnxruntime\" (built without the onnxruntime feature?), see $RUNS/probe.log"; }
fi
echo "$ort_why" > "$RUNS/ort-why"

# ew_config FILE MODEL_DIR BACKEND SPOOL
ew_config() {
  config "$1" "$VID" fast false "$(free_port)" "$4" "$2"
  # model.threads defaults to 1. Threshold 1: no events, so no clips are encoded (nor by the references).
  printf '[decision]\nthreshold = 1.0\n' >> "$1"
  # Like for like: the references run the backbone on every frame they infer, so edgewatch does
  # too (motion gating, on by default, is a separate lever: bench/motion-gating.sh).
  printf '[motion]\nenabled = false\n' >> "$1"
  # Like for like: the references decode whole frames, so edgewatch does too here (its default,
  # `scaled`, decodes less: a separate lever, timed per frame by `cargo bench --bench inference`).
  sed -i "s|^\[model\]|[model]\ndecode = \"full\"|" "$1"
  if [ "$3" = onnxruntime ]; then
    sed -i "s|^\[model\]|[model]\nbackend = \"onnxruntime\"\nonnxruntime-library = \"$ORT_LIB\"|" "$1"
  else
    # Named, not left to "auto": with ORT_DYLIB_PATH set, auto would run onnxruntime.
    sed -i "s|^\[model\]|[model]\nbackend = \"tract\"|" "$1"
  fi
}
# run_pipeline DIR PIPELINE MODEL_DIR: one timed run; writes DIR/PIPELINE.{time,log|json}
run_pipeline() {
  local d=$1 p=$2 m=$3
  case $p in
    tract|onnxruntime)
      [ "$p" = onnxruntime ] && [ $ort_ok = 0 ] && return 0
      ew_config "$d/$p.toml" "$m" "$p" "$d/spool-$p"
      /usr/bin/time -f "%U %S %M" -o "$d/$p.time" "$BIN" --config "$d/$p.toml" detect > "$d/$p.log" 2>&1 \
        || { echo "edgewatch ($p) failed, see $d/$p.log" >&2; tail -3 "$d/$p.log" >&2; exit 1; } ;;
    a|b)
      [ "$p" = a ] && [ -n "${BENCH_SKIP_FUSED:-}" ] && return 0
      local mode=stream; [ "$p" = a ] && mode=fused
      /usr/bin/time -f "%U %S %M" -o "$d/$p.time" "$PY" "$ROOT/bench/python_reference.py" "$VID" "$m" --mode $mode --json > "$d/$p.json" \
        || { echo "python reference ($p) failed" >&2; exit 1; } ;;
  esac
}

# Resize check: edgewatch's own resize code against Pillow BILINEAR on the same decoded pixels, at
# each model size (bench/resize-check.sh; fails above 1 grey level).
sizes=$(for name in $MODELS; do
  awk '/^\[input\]/ { s = 1 } s && /^width/ { w = $3 } s && /^height/ { print w "x" $3; exit }' "$(bench_model "$name")/manifest.toml"
done | sort -u)
# shellcheck disable=SC2086 # one argument per size
"$ROOT/bench/resize-check.sh" "$VID" 8 $sizes > "$RUNS/resize.jsonl" \
  || { echo "bench/resize-check.sh: edgewatch's resize and Pillow's differ by more than 1 grey level:" >&2; cat "$RUNS/resize.jsonl" >&2; exit 1; }

# ew_warmup DIR MODEL_DIR: `edgewatch demo` on the bench video with this model (both backends);
# its summary ("N frames captured, M inferred") goes to DIR/BACKEND.demo.
ew_warmup() {
  for backend in tract onnxruntime; do
    [ "$backend" = onnxruntime ] && [ $ort_ok = 0 ] && continue
    env EDGEWATCH_MODEL__SOURCE="$2" EDGEWATCH_MODEL__BACKEND=$backend EDGEWATCH_MODEL__DECODE=full \
      ${ORT_LIB:+EDGEWATCH_MODEL__ONNXRUNTIME_LIBRARY="$ORT_LIB"} EDGEWATCH_DECISION__THRESHOLD=1.0 "$BIN" demo --out "$1/demo-$backend" --video "$VID" > "$1/$backend.demo" 2>&1 \
      || { echo "edgewatch demo ($backend, $2) failed:" >&2; tail -5 "$1/$backend.demo" >&2; exit 1; }
  done
}
# Warm-up (untimed): edgewatch through `edgewatch demo` (both backends, every mode: its summary
# counts captured and inferred frames), (b) in every mode, (a) once per model (in production mode
# when it runs: (a) every-frame at 224 is the longest run of all).
echo "warm-up: every pipeline once per model (untimed) ..." >&2
for name in $MODELS; do
  for mode in $MODES; do
    d="$RUNS/warmup/$mode/$name"; m=$(dir_for "$mode" "$name"); mkdir -p "$d"
    ew_warmup "$d" "$m"
    run_pipeline "$d" b "$m"
    if [ "$mode" = production ] || [[ " $MODES " != *" production "* ]]; then run_pipeline "$d" a "$m"; fi
  done
done
for name in $int8_models; do
  d="$RUNS/warmup/every-frame/$name"; m=$(every_frame_dir "$name"); mkdir -p "$d"
  ew_warmup "$d" "$m"
  run_pipeline "$d" b "$m"
done

order="tract onnxruntime a b"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS ($order) ..." >&2
  for mode in $MODES; do
    for name in $MODELS; do
      d="$RUNS/$round/$mode/$name"; mkdir -p "$d"
      for p in $order; do run_pipeline "$d" "$p" "$(dir_for "$mode" "$name")"; done
      # The int8 lever, in the same round as the float (b) it is compared with; every-frame only.
      if [ "$mode" = every-frame ] && [ -n "$int8_models" ]; then
        mkdir -p "$d-int8"
        for p in $order; do
          [ "$p" = a ] || run_pipeline "$d-int8" "$p" "$(every_frame_dir "$name-int8")"
        done
      fi
    done
  done
  order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ' | sed 's/ $//')
done

model_args=()
for name in $MODELS; do model_args+=("$name=$(bench_model "$name")"); done
for name in $int8_models; do model_args+=("$name=$(int8_dir "$name")"); done
"$PY" "$ROOT/bench/vs_python_report.py" --runs "$RUNS" --rounds "$ROUNDS" --video "$VID" --frames "$frames" \
  --video-info "$vcodec ${vw}x${vh} ${vfps} fps" --modes "$MODES" --ort-lib "${ORT_LIB:-none}" \
  --bin "$BIN" --skip-fused "${BENCH_SKIP_FUSED:-}" "${model_args[@]}"

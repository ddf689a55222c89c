#!/usr/bin/env bash
# Where tract's backbone time goes against onnxruntime's, by operator (issue 21, item 5): the same
# backbone graph and input, one thread each, tract through examples/op_profile.rs (its optimiser's
# operators, timed around each node) and onnxruntime through its own profiler (kernel time per op
# type). Warm-up 5 runs, then RUNS (default 30) timed.
# Usage: bench/op-profile.sh BACKBONE.onnx SIZE [RUNS]
# e.g. with bench/detect-vs-python.sh's width-1.0 model: target/bench/models/mbv2-w1.0-224-seed7/backbone.onnx 224
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
PY=${EW_MODEL_PYTHON:-/opt/edgewatch-model-venv/bin/python}
[ -x "$PY" ] || { echo "no $PY: run model/run-tests.sh once (it makes the venv)" >&2; exit 1; }
RUNS=${3:-30}
(cd "$ROOT" && cargo build --release --locked --quiet --features onnxruntime --example op_profile)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/op_profile" "$1" "$2" "$RUNS"
OUT=$(mktemp -d "$WORK/op-profile.XXXX")
"$PY" - "$1" "$2" "$RUNS" "$OUT" <<'PY'
import collections, json, sys
import numpy as np
import onnxruntime as ort
path, size, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.enable_profiling = True
so.profile_file_prefix = f"{out}/ort"
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
# The input op_profile uses: ((c*7 + y*3 + x) % 17) / 17 - 0.5
c, y, x = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
inp = (((c * 7 + y * 3 + x) % 17) / 17.0 - 0.5).astype(np.float32)[None]
for _ in range(5 + n):
    s.run(None, {name: inp})
events = json.load(open(s.end_profiling()))
per, runs = collections.defaultdict(float), []
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        per[e["args"]["op_name"]] += e["dur"]
    elif e.get("cat") == "Session" and e["name"] == "model_run":
        runs.append(e["dur"])
timed = runs[5:]
print(f"onnxruntime {ort.__version__} total {np.mean(timed) / 1e3:.3f} ms/frame (mean of {len(timed)}; per op type, kernel time)")
for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
    print(f"  {k:40} {v / len(runs) / 1e3:8.3f} ms/frame")
PY

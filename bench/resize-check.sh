#!/usr/bin/env bash
# The resize claim of bench/detect-vs-python.sh, checked: edgewatch's own resize
# (edgewatch::infer::Preprocessor, the code `detect` runs: fast_image_resize
# Convolution(Bilinear)) against Pillow's BILINEAR (what bench/python_reference.py runs) on
# the same decoded pixels: N frames of VIDEO, decoded once by OpenCV, resized by both to each
# SIZE. Prints one JSON line per size: max and mean |difference| in grey levels, and the share of
# values that differ at all. Exits 1 when any value differs by more than 1 grey level.
# Usage: bench/resize-check.sh [VIDEO (default demo/demo.avi)] [N (default 8)] [SIZE... (default 112x112 224x224)]
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
VID=${1:-$ROOT/demo/demo.avi}
N=${2:-8}
shift $(($# < 2 ? $# : 2))
SIZES=${*:-112x112 224x224}
PY=${EW_MODEL_PYTHON:-/opt/edgewatch-model-venv/bin/python}
[ -x "$PY" ] || { echo "no $PY: run model/run-tests.sh once (it makes the venv)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --locked --quiet --features onnxruntime --example resize_check)
# (--features onnxruntime: the same library build as the bench binary's, so nothing is rebuilt)
EX=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/resize_check
TMP=$(mktemp -d "$WORK/resize-check.XXXX")
trap 'rm -rf "$TMP"' EXIT
# N frames spread over the video, as OpenCV decodes them, RGB
read -r W H < <("$PY" - "$VID" "$N" "$TMP/frames.rgb" <<'PY'
import sys, cv2
video, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cap = cv2.VideoCapture(video)
total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
pick = {round(i * (total - 1) / max(n - 1, 1)) for i in range(n)}
with open(out, "wb") as f:
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i in pick:
            f.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).tobytes())
            shape = bgr.shape
        i += 1
print(shape[1], shape[0])
PY
)
status=0
for size in $SIZES; do
  ow=${size%x*} oh=${size#*x}
  "$EX" "$ROOT/model/demo/manifest.toml" "$W" "$H" "$ow" "$oh" < "$TMP/frames.rgb" > "$TMP/ew-$size.rgb"
  "$PY" - "$TMP/frames.rgb" "$TMP/ew-$size.rgb" "$W" "$H" "$ow" "$oh" "$VID" <<'PY' || status=1
import json, sys
import numpy as np
from PIL import Image
frames, ew, w, h, ow, oh, video = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7]
src = np.fromfile(frames, np.uint8).reshape(-1, h, w, 3)
got = np.fromfile(ew, np.uint8).reshape(-1, oh, ow, 3)
assert len(src) == len(got), (len(src), len(got))
pil = np.stack([np.asarray(Image.fromarray(f).resize((ow, oh), Image.Resampling.BILINEAR)) for f in src])
d = np.abs(pil.astype(int) - got.astype(int))
r = {"video": video, "frames": len(src), "from": f"{w}x{h}", "size": f"{ow}x{oh}",
     "compared": "edgewatch Preprocessor (fast_image_resize Convolution(Bilinear)) vs Pillow BILINEAR",
     "max_abs_diff": int(d.max()), "mean_abs_diff": float(d.mean()), "share_differing": float((d > 0).mean())}
print(json.dumps(r))
sys.exit(0 if r["max_abs_diff"] <= 1 else 1)
PY
done
exit $status

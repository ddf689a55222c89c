"""`python -m edgewatch_model <command>` (or `edgewatch-model <command>`).

Commands: synth, train, export, init, convert, hoist, quantize, evaluate, verify, scores, fuse,
demo-video, example. Exit status: 0 on success, 2 on a usage, data or model
error (with a one-line message naming the file and the problem), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .runtime import configure_threads


def _size(text: str) -> tuple[int, int]:
    """`112` or `160x120` -> (width, height)."""
    try:
        if "x" in text:
            w, h = text.lower().split("x")
            return int(w), int(h)
        return int(text), int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size `{text}` is not N or WxH") from None


def _floats3(text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"`{text}` needs three numbers (R G B)")
    try:
        return tuple(float(p.split("/")[0]) / float(p.split("/")[1]) if "/" in p else float(p) for p in parts)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"`{text}`: not numbers (a/b allowed)") from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edgewatch-model", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="edgewatch model tooling: synthesise clips, train, export, convert and evaluate MobileNetV2 + "
                    "BiLSTM models in edgewatch's two-file streaming contract (see model/README.md).")
    ap.add_argument("--threads", type=int, default=1,
                    help="JAX/XLA threads for training (default 1); onnxruntime always runs on 1 thread")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate synthetic labelled clips in the RWF-2000 layout")
    p.add_argument("out", help="output folder (gets train/ and val/, each with Fight/ and NonFight/)")
    p.add_argument("--train", type=int, default=40, help="training clips per class (default 40)")
    p.add_argument("--val", type=int, default=10, help="validation clips per class (default 10)")
    p.add_argument("--size", type=_size, default=(160, 120), help="frame size WxH (default 160x120)")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate (default 15)")
    p.add_argument("--seconds", type=float, default=4.0,
                   help="clip length (default 4; a window needs T/sample-fps seconds, 3.2 s for 16 at 5 fps)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quality", type=int, default=85, help="JPEG quality 1..100 (default 85)")
    p.add_argument("--hard-negatives", type=float, default=0.15,
                   help="share of NonFight clips with a jogger or a light switch (default 0.15)")
    p.add_argument("--room", type=int, metavar="SEED",
                   help="film every clip in the same room (one fixed camera) instead of a new room per clip")

    p = sub.add_parser("train", help="train MobileNetV2 + BiLSTM on a folder in the RWF-2000 layout")
    p.add_argument("data", help="ROOT with train/{Fight,NonFight} and val/{Fight,NonFight}")
    p.add_argument("out", help="run folder: checkpoints (last/best.ckpt.npz), train-log.jsonl, frame cache")
    p.add_argument("--width-mult", type=float, default=0.35, help="MobileNetV2 width multiplier (default 0.35)")
    p.add_argument("--size", type=_size, default=(112, 112), help="input size N or WxH (default 112)")
    p.add_argument("--window", type=int, default=16, help="T, features per head evaluation (default 16)")
    p.add_argument("--sample-fps", type=float, default=5.0, help="frames per second fed to the backbone (default 5)")
    p.add_argument("--sample-fps-min", type=float, metavar="F",
                   help="train with frame-rate jitter down to F frames/s (the rates a --camera-fps camera gives: "
                        "camera-fps / k) and write temporal.sample-fps-min = F into the exported manifest")
    p.add_argument("--camera-fps", type=float, default=15.0, help="camera rate the jitter's rates divide (default 15)")
    p.add_argument("--hidden", type=int, default=32, help="LSTM hidden size per direction (default 32)")
    p.add_argument("--frame-epochs", type=int, default=8, help="stage 1: backbone on single frames (default 8)")
    p.add_argument("--head-epochs", type=int, default=30, help="stage 2: BiLSTM on frozen features (default 30)")
    p.add_argument("--joint-epochs", type=int, default=0, help="stage 3: end to end on windows (default 0)")
    p.add_argument("--frame-batch", type=int, default=64, help="frames per step in stage 1 (default 64)")
    p.add_argument("--head-batch", type=int, default=128, help="windows per step in stage 2 (default 128)")
    p.add_argument("--batch", type=int, default=16, help="windows per step in stage 3 (default 16)")
    p.add_argument("--frames-per-clip", type=int, default=4, help="stage 1 frames per clip and epoch (default 4)")
    p.add_argument("--head-passes", type=int, default=3, help="stage 2 augmented feature passes (default 3)")
    p.add_argument("--windows-per-clip", type=int, default=1, help="stage 3 windows per clip and epoch")
    p.add_argument("--lr", type=float, default=3e-3, help="stage 1 learning rate (AdamW, default 3e-3)")
    p.add_argument("--head-lr", type=float, default=3e-3, help="stage 2 learning rate (default 3e-3)")
    p.add_argument("--joint-lr", type=float, default=3e-4, help="stage 3 learning rate (default 3e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="no augmentation")
    p.add_argument("--val-stride", type=int, default=1, help="validation windows every N sampled frames")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or too short clips instead of failing")
    p.add_argument("--cache", help="decoded-frame cache folder (default OUT/cache)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt.npz")
    g.add_argument("--init", metavar="CKPT", help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--log-every", type=int, default=10, help="print the loss every N steps (0: never)")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="end after N epochs (all stages) as if interrupted; --resume continues")

    p = sub.add_parser("export", help="write a checkpoint as backbone.onnx + head.onnx + manifest.toml, verified")
    p.add_argument("checkpoint", help="a .ckpt.npz from `train` (usually RUN/best.ckpt.npz)")
    p.add_argument("out", help="model folder to write")
    p.add_argument("--name", default="edgewatch-mobilenetv2-bilstm")
    p.add_argument("--description", default="MobileNetV2 + BiLSTM trained by edgewatch-model")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--no-hoist", action="store_true", help="keep the LSTM's input projection in the head (see `hoist`)")

    p = sub.add_parser("init", help="write an UNTRAINED model (seeded random weights) in the contract, verified: "
                                    "for benchmarks, not a detector")
    p.add_argument("out", help="model folder to write")
    p.add_argument("--width-mult", type=float, default=0.35,
                   help="MobileNetV2 width multiplier (default 0.35, as `train`)")
    p.add_argument("--size", type=_size, default=(112, 112), help="input size N or WxH (default 112)")
    p.add_argument("--window", type=int, default=16, help="T, features per head evaluation (default 16)")
    p.add_argument("--sample-fps", type=float, default=5.0, help="frames per second fed to the backbone (default 5)")
    p.add_argument("--hidden", type=int, default=32, help="LSTM hidden size per direction (default 32)")
    p.add_argument("--seed", type=int, default=7, help="weight seed (default 7); same arguments, same bytes")
    p.add_argument("--name", help="default: edgewatch-untrained-mbv2-WIDTH-WxH-seedN")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--no-hoist", action="store_true", help="keep the LSTM's input projection in the head (see `hoist`)")

    p = sub.add_parser("convert", help="split a fused [1,T,3,H,W] model into the contract, verified")
    p.add_argument("fused", help="the fused ONNX model")
    p.add_argument("out", help="model folder to write")
    p.add_argument("--sample-fps", type=float, required=True,
                   help="frames per second the model was trained on (the fused graph does not say)")
    p.add_argument("--name", default="converted")
    p.add_argument("--description", default="")
    p.add_argument("--window", type=int, help="T, when the model's time axis is symbolic")
    p.add_argument("--size", type=_size, help="WxH, when the model's height/width are symbolic")
    p.add_argument("--mean", type=_floats3, default=(0.485, 0.456, 0.406),
                   help="the model's input normalisation, RGB order, applied to pixel/255 (default ImageNet)")
    p.add_argument("--std", type=_floats3, default=(0.229, 0.224, 0.225),
                   help="e.g. `0 0 0` / `1/255 1/255 1/255` for raw 0..255 input, `0.5 0.5 0.5` twice for -1..1")
    p.add_argument("--bgr", action="store_true", help="the model takes BGR frames (e.g. trained on OpenCV frames)")
    p.add_argument("--class-index", type=int, help="take element K of a [1,C] output (e.g. 1 for [NonFight, Fight])")
    p.add_argument("--sigmoid", action="store_true", help="the output is a logit: apply a sigmoid")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--no-hoist", action="store_true", help="keep the LSTM's input projection in the head (see `hoist`)")

    p = sub.add_parser("hoist", help="move the head LSTM's input projection into the backbone (once per frame "
                                     "instead of T times per window), verified; export and convert do it already")
    p.add_argument("model", help="model folder")
    p.add_argument("--out", help="write here instead of rewriting MODEL in place")

    p = sub.add_parser("quantize", help="an int8 variant (QDQ, static calibration) of a model's backbone, with its "
                                        "score change (and, with --eval, its accuracy change)")
    p.add_argument("model", help="model folder")
    p.add_argument("out", help="model folder to write")
    p.add_argument("--frames", type=int, default=200, help="calibration frames (default 200)")
    p.add_argument("--calibration", metavar="DATA",
                   help="calibrate on DATA/train (RWF-2000 layout) instead of synthetic clips")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="calibration method (default minmax)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    p.add_argument("--seed", type=int, default=0, help="synthetic calibration clips' seed (default 0)")
    p.add_argument("--eval", metavar="DATA", help="evaluate the float and the int8 model on DATA and print the change")
    p.add_argument("--split", default="val", help="split of --eval's DATA (default val)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    p = sub.add_parser("evaluate", help="metrics of a model on labelled clips, streaming as the detector")
    p.add_argument("model", help="model folder")
    p.add_argument("data", help="a folder with Fight/ and NonFight/, or an RWF-2000 ROOT (see --split)")
    p.add_argument("--split", default="val", help="split under ROOT (default val)")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the manifest's)")
    p.add_argument("--target-fpr", type=float, default=0.05,
                   help="false-positive rate (per window) for the suggested threshold (default 0.05)")
    p.add_argument("--write-threshold", action="store_true",
                   help="write the suggested threshold into the manifest (only that line) and re-verify")
    p.add_argument("--rates", metavar="F,F,...", type=_rates,
                   help="also stream at these sampling rates (frames/s) and print the metrics per rate, e.g. "
                        "5,3.75,3,2.5: what the detector's adaptive rate would see (temporal.sample-fps-min)")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    p = sub.add_parser("verify", help="check a model folder against the contract (and streaming == fused)")
    p.add_argument("model")
    p.add_argument("--fused", help="compare against this fused model instead of one composed from the two files")
    p.add_argument("--strict-ops", action="store_true", help="only the contract's op set")

    p = sub.add_parser("scores", help="per-window scores of a video, streaming as the detector")
    p.add_argument("model")
    p.add_argument("video")
    p.add_argument("--threshold", type=float, help="default: the manifest's")

    p = sub.add_parser("fuse", help="compose a model folder's two graphs into one [1,T,3,H,W] -> [1,1] model")
    p.add_argument("model")
    p.add_argument("out", help="fused .onnx to write")
    p.add_argument("--mode", choices=("batch", "unroll"), default="batch",
                   help="backbone over a batch of T frames (TimeDistributed) or T single-frame copies")

    p = sub.add_parser("demo-video", help="the demo video: calm, a burst of fighting figures, calm (MJPEG AVI)")
    p.add_argument("out")
    p.add_argument("--size", type=_size, default=(640, 480))
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--calm", type=float, default=9.0, help="seconds before the burst")
    p.add_argument("--burst", type=float, default=6.0, help="seconds of fighting")
    p.add_argument("--after", type=float, default=9.0, help="seconds after the burst")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--quality", type=int, default=9, help="ffmpeg -q:v (2 best .. 31), default 9")

    p = sub.add_parser("example", help="write a small fused example model (convert's test fixtures)")
    p.add_argument("out")
    p.add_argument("--variant", default="reshape", help="reshape | tf | loop | conv3d")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    configure_threads(args.threads)
    from .contract import ContractError
    from .convert import ConvertError
    from .dataset import LayoutError
    from .video import ClipError

    try:
        return COMMANDS[args.cmd](args)
    except (ContractError, ConvertError, LayoutError, ClipError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def cmd_synth(a) -> int:
    from .synth import synth_dataset

    t = time.time()
    print(f"synth: {a.train}+{a.val} clips per class, {a.size[0]}x{a.size[1]}, {a.fps:g} fps, {a.seconds:g} s, "
          f"seed {a.seed} -> {a.out}")
    synth_dataset(a.out, a.train, a.val, a.size[0], a.size[1], a.fps, a.seconds, a.seed, a.quality, a.hard_negatives,
                  a.room)
    print(f"done in {time.time() - t:.1f} s")
    return 0


def cmd_train(a) -> int:
    from . import net
    from .train import TrainOptions, train

    if a.sample_fps_min is not None and not 0 < a.sample_fps_min <= a.sample_fps:
        print(f"--sample-fps-min {a.sample_fps_min} must be above 0 and at most --sample-fps ({a.sample_fps})",
              file=sys.stderr)
        return 2
    cfg = net.ModelConfig(width_mult=a.width_mult, width=a.size[0], height=a.size[1], window=a.window,
                          sample_fps=a.sample_fps, hidden=a.hidden, sample_fps_min=a.sample_fps_min,
                          camera_fps=a.camera_fps)
    opt = TrainOptions(data=a.data, out=a.out, frame_epochs=a.frame_epochs, head_epochs=a.head_epochs,
                       joint_epochs=a.joint_epochs, frame_batch=a.frame_batch, batch=a.batch, head_batch=a.head_batch,
                       frames_per_clip=a.frames_per_clip, head_passes=a.head_passes,
                       windows_per_clip=a.windows_per_clip, lr=a.lr, head_lr=a.head_lr, joint_lr=a.joint_lr,
                       weight_decay=a.weight_decay, dropout=a.dropout, seed=a.seed, augment=not a.no_augment,
                       val_stride=a.val_stride, skip_bad=a.skip_bad, cache=a.cache, resume=a.resume, init=a.init,
                       log_every=a.log_every, stop_after=a.stop_after)
    t, c = time.time(), time.process_time()
    r = train(cfg, opt, log=lambda s: print(s, flush=True))
    best = r["best"]
    print(f"done in {time.time() - t:.0f} s ({time.process_time() - c:.0f} CPU s); last checkpoint {r['last']}")
    if best:
        w = best["val_window"]
        print(f"best: {best['stage']} epoch {best['epoch']} -> {r['best_path']} (val windows acc {w['accuracy']:.3f} "
              f"F1 {w['f1']:.3f})")
        print(f"export it: python -m edgewatch_model export {r['best_path']} MODEL_DIR")
    return 0


def cmd_export(a) -> int:
    from .export import export

    export(a.checkpoint, a.out, a.name, a.description, a.threshold, hoist_projection=not a.no_hoist)
    return 0


def cmd_init(a) -> int:
    from . import net
    from .export import init_model

    cfg = net.ModelConfig(width_mult=a.width_mult, width=a.size[0], height=a.size[1], window=a.window,
                          sample_fps=a.sample_fps, hidden=a.hidden)
    init_model(a.out, cfg, a.seed, a.name, threshold=a.threshold, hoist_projection=not a.no_hoist)
    return 0


def cmd_convert(a) -> int:
    from .convert import convert

    convert(a.fused, a.out, a.name, a.sample_fps, a.description, a.window, a.size, a.mean, a.std, a.bgr,
            a.class_index, a.sigmoid, a.threshold, hoist_projection=not a.no_hoist)
    return 0


def cmd_hoist(a) -> int:
    from .hoist import NotHoistable, hoist_dir

    try:
        hoist_dir(a.model, a.out or a.model)
    except NotHoistable as e:
        print(f"error: {a.model}: not hoistable: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_quantize(a) -> int:
    from .quantize import quantize_model

    r = quantize_model(a.model, a.out, a.frames, a.seed, a.calibration, a.method, not a.per_tensor, a.eval, a.split)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2, default=str)
    return 0


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--rates: {e}") from e
    if not rates or any(not 0 < r <= 120 for r in rates):
        raise argparse.ArgumentTypeError(f"--rates: {text!r}: each rate must be above 0 and at most 120")
    return rates


def cmd_evaluate(a) -> int:
    from .evaluate import evaluate

    r = evaluate(a.model, a.data, a.split, a.threshold, a.target_fpr, a.write_threshold, a.skip_bad,
                 rates=a.rates)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


def cmd_verify(a) -> int:
    import onnx

    from . import onnx_build
    from .contract import Contract, fused_runner, sample_inputs, verify_equivalence

    c = Contract(a.model, strict_ops=a.strict_ops)
    ops = sorted(set(onnx_build.ops_used(c.models["backbone"])) | set(onnx_build.ops_used(c.models["head"])))
    print(f"{a.model}: manifest, sha256s, names and shapes OK; ops {', '.join(ops)}")
    if a.fused:
        fused = onnx.load(a.fused)
        print(f"streaming vs {a.fused}:")
    else:
        fused = onnx_build.fuse(c.models["backbone"], c.models["head"], c.m.width, c.m.height, c.m.window,
                                c.m.feature_dim, c.m.backbone["input"], c.m.backbone["output"], c.m.head["input"],
                                c.m.head["output"])
        print("streaming vs the two graphs fused into one:")
    worst = verify_equivalence(c, fused_runner(fused), sample_inputs(c.m))
    print(f"verify OK: max |streaming - fused| = {worst:.2e}")
    return 0


def cmd_scores(a) -> int:
    from .contract import Contract

    c = Contract(a.model)
    thr = c.m.threshold if a.threshold is None else a.threshold
    print(f"{a.video} with {a.model} ({c.m.name}), threshold {thr}; one line per window (end time, score):")
    n_above = 0
    for t, s in c.stream_video(a.video):
        mark = "ALERT" if s >= thr else ""
        n_above += s >= thr
        print(f"  {t:6.2f} s  {s:.4f}  {'#' * int(round(s * 40)):<40s} {mark}")
    print(f"{n_above} window(s) at or above {thr}")
    return 0


def cmd_fuse(a) -> int:
    from . import onnx_build
    from .contract import Contract

    c = Contract(a.model)
    m = onnx_build.fuse(c.models["backbone"], c.models["head"], c.m.width, c.m.height, c.m.window,
                        c.m.feature_dim, c.m.backbone["input"], c.m.backbone["output"], c.m.head["input"],
                        c.m.head["output"], mode=a.mode)
    sha, n = onnx_build.save(m, a.out)
    print(f"wrote {a.out} ({n} bytes, sha256 {sha}): frames [1,{c.m.window},3,{c.m.height},{c.m.width}] -> score [1,1]")
    return 0


def cmd_demo_video(a) -> int:
    from .synth import demo_video

    info = demo_video(a.out, a.size[0], a.size[1], a.fps, a.calm, a.burst, a.after, a.seed, a.quality)
    print(f"wrote {a.out}: {info['frames']} frames, {info['duration']:.1f} s, {os.path.getsize(a.out)} bytes; "
          f"burst {info['burst_start']:.1f} s - {info['burst_end']:.1f} s")
    return 0


def cmd_example(a) -> int:
    from . import examples, onnx_build

    m = examples.build(a.variant, a.window, a.size, a.seed)
    sha, n = onnx_build.save(m, a.out)
    print(f"wrote {a.out} ({a.variant}, {n} bytes)")
    return 0


COMMANDS = {"synth": cmd_synth, "train": cmd_train, "export": cmd_export, "init": cmd_init, "convert": cmd_convert,
            "hoist": cmd_hoist, "quantize": cmd_quantize,
            "evaluate": cmd_evaluate, "verify": cmd_verify, "scores": cmd_scores, "fuse": cmd_fuse,
            "demo-video": cmd_demo_video, "example": cmd_example}

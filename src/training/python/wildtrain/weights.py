"""Loading PaddleClas .pdparams into our ResNet_vd layers, strictly.

A .pdparams file is a pickle of {structured name: numpy array}; paddle.save also adds a
"StructuredToParameterName@@" bookkeeping entry, which is not a weight. Every other key must match
a parameter or buffer of the model by name and shape. The one tolerated difference is the FC head
when the class count differs (ImageNet's 1000 classes vs ours): it stays freshly initialised and
the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import paddle

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


def load_pretrained(model, path: str) -> LoadReport:
    incoming = read_pdparams(path)
    own = model.state_dict()
    report = LoadReport(path)
    report.missing = sorted(k for k in own if k not in incoming)
    report.unexpected = sorted(k for k in incoming if k not in own)
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

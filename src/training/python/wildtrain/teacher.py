"""An online teacher for distillation (PaddleClas SSLD style): a frozen model in Paddle that scores
every augmented crop the student trains on, instead of one stored centre-crop soft label per image.

Frozen means no gradients (stop_gradient on every parameter, forward under no_grad) and eval-mode
batch norm (running statistics used, never updated). The state fingerprint before and after
training goes into training.json, so a teacher that changed is visible, and tested.
"""
from __future__ import annotations

import hashlib

import numpy as np
import paddle
import paddle.nn.functional as F

from . import data as D
from .architectures import build
from .weights import load_pretrained


class OnlineTeacher:
    def __init__(self, spec: dict):
        self.spec = spec
        self.size = int(spec["image_size"])
        self.mean, self.std = spec["mean"], spec["std"]
        self.pixel_scale = spec.get("pixel_scale", 255)
        self.model = build(spec["arch"], class_num=int(spec["class_num"]))
        report = load_pretrained(self.model, spec["weights"])
        if report.head_reinitialised:
            shapes = ", ".join(f"{k} {list(v)}" for k, v in report.head_reinitialised.items())
            raise ValueError(f"teacher weights {spec['weights']} do not have the teacher's {spec['class_num']} classes ({shapes})")
        self.model.eval()
        for p in self.model.parameters():
            p.stop_gradient = True
        self.before = self.fingerprint()
        self.scored = 0

    def fingerprint(self) -> str:
        """sha256 of every parameter and buffer (batch-norm running statistics included)."""
        h = hashlib.sha256()
        for name, value in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(value.numpy()).tobytes())
        return h.hexdigest()

    def tensor(self, im) -> np.ndarray:
        return D.to_chw(im, self.mean, self.std, self.pixel_scale)

    def probabilities(self, tensors: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            probs = F.softmax(self.model(paddle.to_tensor(tensors.astype(np.float32))), axis=-1).numpy()
        self.scored += len(tensors)
        return probs

    def report(self) -> dict:
        return {
            "arch": self.spec["arch"], "weights": self.spec["weights"], "class_num": int(self.spec["class_num"]),
            "image_size": self.size, "crops_scored": self.scored, "eval_mode": not self.model.training,
            "trainable_parameters": sum(1 for p in self.model.parameters() if not p.stop_gradient),
            "state_sha256_before": self.before, "state_sha256_after": self.fingerprint(),
        }

"""Training with a frozen prefix computed once, in ONNX Runtime.

On a shared 2-core CPU, Paddle's eager forward of EfficientNet-Lite's high-resolution early layers
costs about as much as the whole trainable rest: a frozen stem and first stages (lr_mult 0) are
still re-run on every augmented crop of every epoch. Here each training image gets `views`
augmented crops up front (the configured random-resized crop and flip), the frozen prefix is
exported to ONNX and run once on all of them (many times faster than Paddle eager on this CPU),
and training then reads one cached view per image per epoch. Augmentation is thereby limited to
`views` fixed crops per image; the frozen layers receive no gradient either way, so the
trainable layers see exactly what end-to-end training with the same frozen layers would give
them for those crops.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import paddle

from . import data as D


class FrozenPrefix(paddle.nn.Layer):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_frozen(x)


def prefix_session(model, threads: int):
    import onnxruntime as ort

    model.eval()
    spec = [paddle.static.InputSpec(shape=[None, 3, None, None], dtype="float32", name="x")]
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "prefix")
        paddle.onnx.export(FrozenPrefix(model), prefix, input_spec=spec, opset_version=13)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(prefix + ".onnx", opts, providers=["CPUExecutionProvider"])
    model.train()
    return session


def run_prefix(session, tensors, count: int, batch: int = 16, label: str = "", stream=sys.stderr) -> np.ndarray:
    """Prefix outputs (float16, half the memory) of `count` CHW tensors from an iterator."""
    name = session.get_inputs()[0].name
    out = None
    started, last, done = time.monotonic(), 0.0, 0
    pending = []

    def flush():
        nonlocal out, done
        y = session.run(None, {name: np.stack(pending)})[0].astype(np.float16)
        if out is None:
            out = np.empty((count,) + y.shape[1:], np.float16)
        out[done:done + len(y)] = y
        done += len(y)
        pending.clear()

    for t in tensors:
        pending.append(t)
        if len(pending) == batch:
            flush()
            if time.monotonic() - last > 30:
                stream.write(f"caching {label}: {done}/{count} ({done / max(time.monotonic() - started, 1e-6):.1f} images/s)\n")
                stream.flush()
                last = time.monotonic()
    if pending:
        flush()
    stream.write(f"cached {label}: {done} in {time.monotonic() - started:.0f} s\n")
    return out if out is not None else np.zeros((0,), np.float16)


def cache_train_views(session, cache: D.DecodedCache, samples, views: int, size: int, scale, ratio, flip: bool,
                      mean, std, pixel_scale, rng, teacher=None):
    """[images, views, C, H, W]: view k of image i is the k-th crop drawn for it from rng. With an
    online teacher also [images, views, classes]: its probabilities on each of those crops."""
    soft = []

    def crops():
        pending = []
        for s in samples:
            for _ in range(views):
                im, seen_by_teacher = D.augmented_pair(cache.images[s.path], size, scale, ratio, flip, rng,
                                                       teacher.size if teacher else None)
                if teacher:
                    pending.append(teacher.tensor(seen_by_teacher))
                    if len(pending) == 16:
                        soft.append(teacher.probabilities(np.stack(pending)))
                        pending.clear()
                yield D.to_chw(im, mean, std, pixel_scale)
        if pending:
            soft.append(teacher.probabilities(np.stack(pending)))

    feats = run_prefix(session, crops(), len(samples) * views, label="train views")
    feats = feats.reshape((len(samples), views) + feats.shape[1:])
    if not teacher:
        return feats, None
    return feats, np.concatenate(soft).reshape((len(samples), views, -1))

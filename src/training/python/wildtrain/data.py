"""Datasets for training and evaluation: a labels CSV (path, class, split, trade_relevant) or an
image folder (root/<class>/<file>). Unreadable images are reported with their path and skipped,
never fatal: one bad file must not cost a multi-hour training run."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import sys
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class Sample:
    path: str
    label: str | None
    trade_relevant: bool | None = None
    # SSLD: the frozen teacher's probabilities over Dataset.classes (None outside distillation).
    soft: list[float] | None = None


@dataclass
class Dataset:
    samples: list[Sample]
    classes: list[str]
    trade_relevant: dict[str, bool] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)


def read_csv_dataset(root: str, labels_file: str, split: str | None) -> Dataset:
    labels_path = labels_file if os.path.isabs(labels_file) else os.path.join(root, labels_file)
    with open(labels_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in ("path", "class") if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{labels_path}: missing column(s) {', '.join(missing)}")
    # Classes come from every row, not only this split, so train and val share one index.
    classes = sorted({r["class"] for r in rows})
    relevance: dict[str, bool] = {}
    for r in rows:
        if "trade_relevant" in r and r["trade_relevant"] in ("yes", "no"):
            relevance[r["class"]] = r["trade_relevant"] == "yes"
    chosen = [r for r in rows if split is None or r.get("split") == split]
    samples = [Sample(os.path.join(root, r["path"]), r["class"], relevance.get(r["class"])) for r in chosen]
    return Dataset(samples, classes, relevance)


def read_folder_dataset(root: str) -> Dataset:
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    samples = []
    for c in classes:
        for name in sorted(os.listdir(os.path.join(root, c))):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                samples.append(Sample(os.path.join(root, c, name), c))
    return Dataset(samples, classes)


def read_soft_label_set(file: str) -> Dataset:
    """SSLD's distillation set, written by src/training/ssld: labelled and mined images with the
    teacher's soft labels; mined images have label null. Without "soft" an image is scored only by
    an online teacher (the ImageNet-knowledge stage: the teacher's 1000 classes, no stored labels)."""
    with open(file, encoding="utf-8") as fh:
        doc = json.load(fh)
    classes = list(doc["classes"])
    relevance = {c: bool(v) for c, v in doc.get("trade_relevant", {}).items() if v is not None}
    samples = []
    for item in doc["samples"]:
        soft = item.get("soft")
        if soft is not None and len(soft) != len(classes):
            raise ValueError(f"{file}: {item['path']} has {len(soft)} soft-label values for {len(classes)} classes")
        label = item.get("label")
        if label is not None and label not in classes:
            raise ValueError(f"{file}: {item['path']} has label {label!r}, not one of the classes")
        samples.append(Sample(item["path"], label, relevance.get(label) if label else None, soft))
    return Dataset(samples, classes, relevance)


def read_dataset(spec: dict, root_override: str | None = None) -> Dataset:
    if spec["name"] == "SoftLabelSet":
        return read_soft_label_set(spec["file"])
    root = root_override or spec.get("root")
    if not root:
        raise ValueError("dataset root is not set: pass --data or set DataLoader.*.dataset.root")
    if spec["name"] == "CSVDataset":
        return read_csv_dataset(root, spec.get("labels", "labels.csv"), spec.get("split"))
    return read_folder_dataset(root)


def load_rgb(path: str) -> Image.Image:
    """Decode like the service does: first frame, EXIF orientation applied, alpha over white."""
    with Image.open(path) as im:
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            canvas = Image.new("RGB", im.size, (255, 255, 255))
            canvas.paste(im, mask=im.getchannel("A"))
            return canvas
        return im.convert("RGB")


def resize_short(im: Image.Image, short: int) -> Image.Image:
    w, h = im.size
    scale = short / min(w, h)
    # round() like sharp's resize with fit "outside", so train-time eval and serving agree.
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)


def center_crop(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def to_chw(im: Image.Image, mean, std, pixel_scale: float = 255.0) -> np.ndarray:
    """x = (pixel / pixel_scale - mean) / std: scale 255 with ImageNet mean/std (PaddleClas), or
    scale 1 with mean 127 / std 128 (TensorFlow's EfficientNet-Lite), as the model.json says."""
    arr = np.asarray(im, dtype=np.float32) / np.float32(pixel_scale)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return arr.transpose(2, 0, 1).copy()


def random_resized_box(im: Image.Image, scale, ratio, rng: random.Random):
    """The box an Inception-style crop (PaddleClas RandCropImage) takes: area in `scale`, aspect in
    `ratio`; None for its centre-crop fallback. Separate from the resize so an online teacher can
    see the student's crop at its own input size."""
    w, h = im.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        log_r = (np.log(ratio[0]), np.log(ratio[1]))
        aspect = float(np.exp(rng.uniform(*log_r)))
        cw, ch = int(round((target * aspect) ** 0.5)), int(round((target / aspect) ** 0.5))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return (x, y, x + cw, y + ch)
    return None


def crop_box(im: Image.Image, box, size: int) -> Image.Image:
    return im.resize((size, size), Image.BILINEAR, box=box) if box else center_crop(resize_short(im, size), size)


def random_resized_crop(im: Image.Image, size: int, scale, ratio, rng: random.Random) -> Image.Image:
    return crop_box(im, random_resized_box(im, scale, ratio, rng), size)


def augmented_pair(im: Image.Image, size: int, scale, ratio, flip: bool, rng: random.Random, teacher_size: int | None):
    """One training crop (random-resized, maybe flipped) and, for an online teacher, the same crop
    and flip at the teacher's input size. Draws from rng exactly as random_resized_crop + flip do."""
    box = random_resized_box(im, scale, ratio, rng)
    flipped = flip and rng.random() < 0.5
    views = [crop_box(im, box, size)] + ([crop_box(im, box, teacher_size)] if teacher_size else [])
    if flipped:
        views = [v.transpose(Image.FLIP_LEFT_RIGHT) for v in views]
    return views[0], (views[1] if teacher_size else None)


class DecodedCache:
    """Decodes each image once and keeps it in memory at a bounded short side."""

    def __init__(self, max_short: int | None):
        self.max_short = max_short
        self.images: dict[str, Image.Image] = {}

    def load(self, samples: list[Sample], skipped: list[dict]) -> list[Sample]:
        kept = []
        for s in samples:
            try:
                im = load_rgb(s.path)
                if self.max_short and min(im.size) > self.max_short:
                    im = resize_short(im, self.max_short)
                self.images[s.path] = im
                kept.append(s)
            except Exception as err:  # corrupt, truncated or missing: report and go on
                skipped.append({"path": s.path, "error": f"{type(err).__name__}: {err}"})
                print(f"warning: skipping unreadable image {s.path}: {err}", file=sys.stderr)
        return kept


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

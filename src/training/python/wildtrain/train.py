"""Supervised fine-tuning of a ResNet_vd classifier (PaddleClas recipe: Momentum, cosine LR with
linear warmup, L2 decay, label smoothing, per-stage LR multipliers, random-resized crop + flip).

The config arrives already validated by src/training/config.ts; this module trusts its shape.
Checkpoints are written every epoch and on Ctrl-C, so a long CPU run can stop and resume.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn.functional as F

from . import data as D
from .progress import Progress
from .protocol import EXIT_INTERRUPTED
from .architectures import build
from .weights import load_pretrained



def smoothed_cross_entropy(logits, labels, epsilon: float):
    num_classes = logits.shape[-1]
    target = F.one_hot(labels, num_classes) * (1.0 - epsilon) + epsilon / num_classes
    return -(target * F.log_softmax(logits, axis=-1)).sum(axis=-1).mean()


def js_divergence(logits, teacher_probs, eps: float = 1e-7):
    """Jensen-Shannon divergence between the student's softmax and the teacher's (SSLD's loss):
    symmetric and bounded, so confidently wrong teachers cannot blow the loss up as KL would."""
    student = F.softmax(logits, axis=-1)
    mid = (student + teacher_probs) / 2.0

    def kl(p, q):
        return (p * (paddle.log(p + eps) - paddle.log(q + eps))).sum(axis=-1)

    return (0.5 * kl(teacher_probs, mid) + 0.5 * kl(student, mid)).mean()


class Objective:
    """The configured Loss.Train entries: CELoss on labelled samples (label smoothing), JSDivLoss
    on every sample against the teacher's soft label: the online teacher's on this very crop when
    there is one, else the stored centre-crop one. Unlabelled (mined) samples only ever reach the
    JS term."""

    def __init__(self, entries: list[dict]):
        self.ce = next((e["CELoss"] for e in entries if "CELoss" in e), None)
        self.js = next((e["JSDivLoss"] for e in entries if "JSDivLoss" in e), None)

    def __call__(self, logits, batch, class_index: dict, online_soft: np.ndarray | None = None):
        total = None
        if self.js:
            if online_soft is None and any(s.soft is None for s in batch):
                raise ValueError("JSDivLoss: an image has no stored soft label and there is no online Teacher to score it")
            stored = online_soft if online_soft is not None else np.array([s.soft for s in batch])
            soft = paddle.to_tensor(stored.astype(np.float32))
            total = js_divergence(logits, soft) * self.js.get("weight", 1.0)
        if self.ce:
            rows = [i for i, s in enumerate(batch) if s.label is not None]
            if rows:
                y = paddle.to_tensor(np.array([class_index[batch[i].label] for i in rows], dtype=np.int64))
                picked = logits if len(rows) == len(batch) else paddle.gather(logits, paddle.to_tensor(rows))
                ce = smoothed_cross_entropy(picked, y, self.ce.get("epsilon", 0.0)) * self.ce.get("weight", 1.0)
                total = ce if total is None else total + ce
        if total is None:  # a JS-free batch of mined images cannot happen; a CE-only batch without labels can
            total = (logits * 0.0).sum()
        return total


def target_index(sample, class_index: dict, online_soft=None) -> int:
    """For train accuracy: the label, or the teacher's top class for an unlabelled image."""
    if sample.label is not None:
        return class_index[sample.label]
    return int(np.argmax(online_soft if online_soft is not None else sample.soft))


def make_optimizer(cfg: dict, model, steps_per_epoch: int, epochs: int):
    lr_cfg = cfg["lr"]
    total = max(1, steps_per_epoch * epochs)
    warmup = int(lr_cfg.get("warmup_epoch", 0) * steps_per_epoch)
    schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr_cfg["learning_rate"], T_max=max(1, total - warmup))
    if warmup > 0:
        schedule = paddle.optimizer.lr.LinearWarmup(schedule, warmup, lr_cfg.get("warmup_start_lr", 0.0),
                                                    lr_cfg["learning_rate"])
    reg = cfg.get("regularizer")
    decay = paddle.regularizer.L2Decay(reg["coeff"]) if reg else None
    opt = paddle.optimizer.Momentum(learning_rate=schedule, momentum=cfg.get("momentum", 0.9),
                                    parameters=model.parameters(), weight_decay=decay)
    return opt, schedule


class Ranks:
    """Data-parallel training under `python -m paddle.distributed.launch` (several GPUs, or CPU
    processes): each rank trains on its shard, gradients are averaged, and only rank 0 evaluates,
    logs and writes checkpoints. A plain run is world size 1 and takes none of these paths."""

    def __init__(self):
        self.world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
        if self.world > 1:
            dist.init_parallel_env()
        self.rank = dist.get_rank() if self.world > 1 else 0
        self.leader = self.rank == 0

    def wrap(self, model):
        return paddle.DataParallel(model) if self.world > 1 else model


def batches(samples, batch_size: int, order_seed: int, ranks: Ranks, steps: int):
    """The same shuffled order on every rank (seeded per epoch), then this rank's share of it."""
    order = list(range(len(samples)))
    random.Random(order_seed).shuffle(order)
    mine = order[ranks.rank::ranks.world]
    for step in range(steps):
        yield [samples[j] for j in mine[step * batch_size:(step + 1) * batch_size]]


def evaluate(model, tensors: np.ndarray, labels: np.ndarray, batch_size: int, forward=None) -> dict:
    model.eval()
    forward = forward or model
    correct, n = 0, len(labels)
    with paddle.no_grad():
        for i in range(0, n, batch_size):
            logits = forward(paddle.to_tensor(tensors[i:i + batch_size].astype(np.float32)))
            correct += int((logits.argmax(axis=-1).numpy() == labels[i:i + batch_size]).sum())
    model.train()
    return {"top1": correct / n if n else 0.0, "n": n}


class Checkpointer:
    def __init__(self, out_dir: str):
        self.dir = os.path.join(out_dir, "checkpoints")
        os.makedirs(self.dir, exist_ok=True)

    def save(self, model, opt, state: dict):
        # Write then rename, so a kill during the save never leaves a half checkpoint as "latest".
        for suffix, obj in ((".pdparams", model.state_dict()), (".pdopt", opt.state_dict())):
            tmp = os.path.join(self.dir, "latest" + suffix + ".tmp")
            paddle.save(obj, tmp)
            os.replace(tmp, os.path.join(self.dir, "latest" + suffix))
        with open(os.path.join(self.dir, "latest.json.tmp"), "w") as fh:
            json.dump(state, fh)
        os.replace(os.path.join(self.dir, "latest.json.tmp"), os.path.join(self.dir, "latest.json"))

    def load(self, model, opt) -> dict | None:
        meta = os.path.join(self.dir, "latest.json")
        if not os.path.exists(meta):
            return None
        model.set_state_dict(paddle.load(os.path.join(self.dir, "latest.pdparams")))
        opt.set_state_dict(paddle.load(os.path.join(self.dir, "latest.pdopt")))
        with open(meta) as fh:
            return json.load(fh)


def run(cfg: dict, out_dir: str, data_root: str | None, resume: bool) -> int:
    g = cfg["Global"]
    seed = g.get("seed", 42)
    random.seed(seed); np.random.seed(seed); paddle.seed(seed)
    ranks = Ranks()
    # Augmentation randomness differs per rank; the shuffle order does not (see batches()).
    rng = random.Random(seed * 1009 + ranks.rank)
    os.makedirs(out_dir, exist_ok=True)
    log = open(os.path.join(out_dir, "train.log.jsonl"), "a", buffering=1) if ranks.leader else None

    def emit(event: str, **fields):
        if log:
            log.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")

    size, short, mean, std = g["image_size"], g["resize_short"], g["mean"], g["std"]
    pixel_scale = g.get("pixel_scale", 255)
    train_cfg, eval_cfg = cfg["DataLoader"]["Train"], cfg["DataLoader"].get("Eval")
    train_set = D.read_dataset(train_cfg["dataset"], data_root)
    classes = train_set.classes
    class_index = {c: i for i, c in enumerate(classes)}
    skipped: list[dict] = []
    # Keep train images a little larger than the crop so random-resized crops keep detail.
    train_cache = D.DecodedCache(max_short=size * 2)
    train_samples = train_cache.load(train_set.samples, skipped)
    eval_tensors = eval_labels = None
    eval_count = 0
    if eval_cfg:
        eval_set = D.read_dataset(eval_cfg["dataset"], data_root)
        unknown = sorted({s.label for s in eval_set.samples} - set(classes))
        if unknown:
            raise ValueError(f"eval classes not in the training classes: {', '.join(unknown)}")
        eval_cache = D.DecodedCache(max_short=None)
        kept = eval_cache.load(eval_set.samples, skipped)
        eval_tensors = np.stack([D.to_chw(D.center_crop(D.resize_short(eval_cache.images[s.path], short), size),
                                          mean, std, pixel_scale) for s in kept]) if kept else np.zeros((0, 3, size, size), np.float32)
        eval_labels = np.array([class_index[s.label] for s in kept], dtype=np.int64)
        eval_count = len(kept)
    if not train_samples:
        raise ValueError("no readable training images")
    emit("data", train=len(train_samples), eval=eval_count, classes=len(classes), skipped=skipped)

    arch = cfg["Arch"]
    model = build(arch["name"], class_num=len(classes), lr_mult_list=arch.get("lr_mult_list", [1.0] * 5))
    if arch.get("pretrained"):
        report = load_pretrained(model, arch["pretrained"])
        print(report.describe(), file=sys.stderr)
        emit("pretrained", **report.as_dict())

    tcfg = train_cfg.get("transforms", {})
    crop_cfg = tcfg.get("random_resized_crop", {})
    scale, ratio = crop_cfg.get("scale", [0.08, 1.0]), crop_cfg.get("ratio", [3 / 4, 4 / 3])
    flip = tcfg.get("horizontal_flip", True)
    views = g.get("cached_views")
    cached = cached_soft = None
    teacher = None
    if cfg.get("Teacher"):
        from .teacher import OnlineTeacher
        teacher = OnlineTeacher(cfg["Teacher"])
        if teacher.spec["class_num"] != len(classes):
            raise ValueError(f"the teacher has {teacher.spec['class_num']} classes, the training data {len(classes)}")
        print(f"online teacher: {teacher.spec['arch']} at {teacher.size} px from {teacher.spec['weights']}", file=sys.stderr)
    if views:
        if ranks.world > 1 or not getattr(model, "frozen_blocks", 0):
            raise ValueError("Global.cached_views needs one process and an architecture with a frozen prefix (leading lr_mult 0)")
        from .cached import cache_train_views, prefix_session, run_prefix
        session = prefix_session(model, int(os.environ.get("OMP_NUM_THREADS", "2")))
        cached, cached_soft = cache_train_views(session, train_cache, train_samples, views, size, scale, ratio, flip,
                                                mean, std, pixel_scale, rng, teacher)
        if eval_tensors is not None:
            eval_tensors = run_prefix(session, iter(eval_tensors), len(eval_tensors), label="eval")
        train_cache.images.clear()  # decoded photos are no longer needed: free the memory
        del session
        emit("cached", views=views, shape=list(cached.shape))
    row_of = {id(s): i for i, s in enumerate(train_samples)}

    bs = train_cfg["batch_size"]
    # Every rank takes the same number of full batches, or the gradient all-reduce would wait forever.
    per_rank = len(train_samples) // ranks.world
    steps = max(1, per_rank // bs) if per_rank >= bs else 1
    net = ranks.wrap(model)
    forward = model.forward_trainable if cached is not None else net
    epochs = g["epochs"]
    opt, schedule = make_optimizer(cfg["Optimizer"], model, steps, epochs)
    ckpt = Checkpointer(out_dir)
    start_epoch, history = 0, []
    if resume:
        state = ckpt.load(model, opt)
        if state:
            start_epoch, history = state["epoch"], state["history"]
            rng.setstate(tuple(state["rng"][0:1]) + (tuple(state["rng"][1]),) + tuple(state["rng"][2:]))
            print(f"resumed from epoch {start_epoch}", file=sys.stderr)
            emit("resume", epoch=start_epoch)

    stop = {"requested": False}

    def on_sigint(_sig, _frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\ninterrupt: saving a checkpoint after this batch (Ctrl-C again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)

    objective = Objective(cfg["Loss"]["Train"])
    progress = Progress(total_epochs=epochs, steps_per_epoch=steps, start_epoch=start_epoch,
                        stream=sys.stderr if ranks.leader else open(os.devnull, "w"))
    model.train()

    def state_for(epoch_done: int) -> dict:
        s = rng.getstate()
        return {"epoch": epoch_done, "history": history, "rng": [s[0], list(s[1]), s[2]], "classes": classes}

    for epoch in range(start_epoch, epochs):
        seen = correct = 0
        loss_sum = 0.0
        for step, batch in enumerate(batches(train_samples, bs, seed + epoch, ranks, steps)):
            online_soft = None
            if cached is not None:
                picked = [(row_of[id(s)], rng.randrange(views)) for s in batch]
                x = paddle.to_tensor(np.stack([cached[i, v] for i, v in picked]).astype(np.float32))
                if cached_soft is not None:
                    online_soft = np.stack([cached_soft[i, v] for i, v in picked])
            else:
                imgs, teacher_imgs = [], []
                for s in batch:
                    im, seen_by_teacher = D.augmented_pair(train_cache.images[s.path], size, scale, ratio, flip, rng,
                                                           teacher.size if teacher else None)
                    imgs.append(D.to_chw(im, mean, std, pixel_scale))
                    if teacher:
                        teacher_imgs.append(teacher.tensor(seen_by_teacher))
                x = paddle.to_tensor(np.stack(imgs))
                if teacher:
                    online_soft = teacher.probabilities(np.stack(teacher_imgs))
            y = np.array([target_index(s, class_index, None if online_soft is None else online_soft[k])
                          for k, s in enumerate(batch)], dtype=np.int64)
            logits = forward(x)
            loss = objective(logits, batch, class_index, online_soft)
            loss.backward()
            opt.step(); opt.clear_grad(); schedule.step()
            n = len(batch)
            seen += n
            loss_sum += float(loss) * n
            correct += int((logits.argmax(axis=-1).numpy() == y).sum())
            progress.update(epoch, step + 1, loss_sum / seen, correct / seen, opt.get_lr())
            if stop["requested"]:
                # The epoch is incomplete: keep the last finished epoch as the resume point.
                if ranks.leader:
                    ckpt.save(model, opt, state_for(epoch))
                    emit("interrupted", epoch=epoch, step=step + 1)
                    print(f"checkpoint saved in {ckpt.dir}; resume with --resume", file=sys.stderr)
                return EXIT_INTERRUPTED
        if not ranks.leader:
            continue
        # Loss and accuracy are rank 0's shard; under data parallelism that is a sample of the epoch.
        record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
                  "lr": opt.get_lr()}
        if eval_tensors is not None and ((epoch + 1) % g.get("eval_interval", 1) == 0 or epoch + 1 == epochs):
            record["val_top1"] = evaluate(model, eval_tensors, eval_labels, eval_cfg.get("batch_size", 64),
                                          forward=model.forward_trainable if cached is not None else None)["top1"]
        history.append(record)
        emit("epoch", **record)
        progress.epoch_done(record)
        ckpt.save(model, opt, state_for(epoch + 1))

    if not ranks.leader:
        return 0
    paddle.save(model.state_dict(), os.path.join(out_dir, "final.pdparams"))
    summary = {
        "arch": arch["name"], "classes": classes,
        "trade_relevant": {c: train_set.trade_relevant.get(c) for c in classes},
        "image_size": size, "resize_short": short, "mean": mean, "std": std, "pixel_scale": pixel_scale,
        "epochs": epochs, "history": history, "cached_views": views or None, "skipped": skipped, "processes": ranks.world,
        "train_images": len(train_samples), "eval_images": eval_count,
        "unlabeled_train_images": sum(1 for s in train_samples if s.label is None),
        "calibration": [s.path for s in train_samples],
        **({"online_teacher": teacher.report()} if teacher else {}),
    }
    with open(os.path.join(out_dir, "training.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    emit("done", final=history[-1] if history else None)
    return 0

"""Progress display for long CPU runs: a redrawn bar on a terminal, plain lines elsewhere (CI logs)."""
from __future__ import annotations

import sys
import time


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, total_epochs: int, steps_per_epoch: int, start_epoch: int = 0, stream=sys.stderr):
        self.total_epochs, self.steps = total_epochs, steps_per_epoch
        self.remaining_steps = (total_epochs - start_epoch) * steps_per_epoch
        self.done_steps = 0
        self.started = time.monotonic()
        self.stream = stream
        self.tty = stream.isatty()
        self.last_line = 0.0

    def update(self, epoch: int, step: int, loss: float, acc: float, lr: float):
        self.done_steps += 1
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done_steps * (self.remaining_steps - self.done_steps)
        filled = int(20 * step / max(self.steps, 1))
        line = (f"epoch {epoch + 1}/{self.total_epochs} [{'#' * filled}{'.' * (20 - filled)}] "
                f"{step}/{self.steps} loss {loss:.4f} acc {acc:.3f} lr {lr:.5f} eta {_fmt_duration(eta)}")
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
        elif time.monotonic() - self.last_line > 30 or step == self.steps:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_line = time.monotonic()

    def epoch_done(self, record: dict):
        val = f" val_top1 {record['val_top1']:.3f}" if "val_top1" in record else ""
        self.stream.write(("\n" if self.tty else "") +
                          f"epoch {record['epoch']}: loss {record['loss']:.4f} train_top1 {record['train_top1']:.3f}{val}\n")
        self.stream.flush()

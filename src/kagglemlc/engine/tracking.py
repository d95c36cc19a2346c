"""Experiment tracking (W&B or TensorBoard, through accelerate) and plain progress lines where no bar shows.

    kagglemlc train configs/demo.yaml train.report_to=wandb   # pip install 'kagglemlc[wandb]' first

W&B: one project per competition (`train.tracker_project`, default `competition.slug`, else the
competition folder's name), a group per experiment (`name`), a run per fold (`<name>-fold<k>`).
TensorBoard: the same names as folders, <output_dir>/tensorboard/<project>/<name>-fold<k>/, so
`tensorboard --logdir <output_dir>/tensorboard` shows one project with a run per fold. Both get the
resolved config, the training loss, learning rate and samples/s every `train.log_every` optimiser steps
and the metrics at every evaluation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from accelerate import Accelerator
from accelerate.utils import is_tensorboard_available, is_wandb_available

from kagglemlc.config import Config, settings_dict
from kagglemlc.core.console import info
from kagglemlc.core.errors import KaggleMLCError

AVAILABLE = {"wandb": is_wandb_available, "tensorboard": is_tensorboard_available}


def require_tracker(report_to: str) -> None:
    """Raises a one-line error when the tracker's package is absent (accelerate would silently log nothing)."""
    if report_to in AVAILABLE and not AVAILABLE[report_to]():
        raise KaggleMLCError(
            f"train.report_to: {report_to} is not installed; pip install 'kagglemlc[{report_to}]' "
            "(or set train.report_to: none)"
        )


def tracker_project(cfg: Config) -> str:
    """The project every experiment of the competition logs to."""
    return cfg.train.tracker_project or cfg.competition.slug or cfg.competition.train.parent.name


def run_name(cfg: Config, fold: int) -> str:
    return f"{cfg.name}-fold{fold}"


def start_run(accelerator: Accelerator, cfg: Config, fold: int) -> None:
    """Opens the fold's run with the resolved config (the trackers are finished at the end of the fold)."""
    project, name = tracker_project(cfg), run_name(cfg, fold)
    if cfg.train.report_to == "wandb":
        accelerator.init_trackers(
            project, config=settings_dict(cfg), init_kwargs={"wandb": {"group": cfg.name, "name": name}}
        )
    elif cfg.train.report_to == "tensorboard":
        # accelerate writes to <logging_dir = output_dir>/<project_name>: the run's folder
        accelerator.init_trackers(f"tensorboard/{project}/{name}")
        if accelerator.is_main_process:
            # hparams take flat scalars; run_name "." keeps them in the run's folder (the default is a new
            # folder named by the time, which TensorBoard lists as one more run)
            writer = accelerator.get_tracker("tensorboard", unwrap=True)
            writer.add_hparams(_flat(settings_dict(cfg)), {}, run_name=".")


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = json.dumps(value) if isinstance(value, list) else value
    return flat


class StepLog:
    """Sends the mean training loss, the learning rate and samples/s to the trackers every `every` steps."""

    def __init__(self, accelerator: Accelerator, every: int):
        self.accelerator, self.every = accelerator, every
        self.loss, self.n = 0.0, 0

    def add(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        self.loss, self.n = self.loss + loss, self.n + 1
        if step % self.every == 0:
            values = {"train/loss": self.loss / self.n, "train/lr": lr, "train/samples_per_s": samples_per_s}
            self.accelerator.log(values, step=step)
            self.loss, self.n = 0.0, 0


class ProgressLog:
    """A plain progress line at most every `every_seconds`, for output that is not a terminal (where the
    rich bar is off): a notebook cell running `!kagglemlc train`, a log file.

        lines = ProgressLog(name="fold 0", total_steps=400, start_step=0, every_seconds=30, enabled=True)
        lines.maybe_log(step, loss, samples_per_s)   # after every optimiser step
    """

    def __init__(
        self,
        name: str,
        total_steps: int,
        start_step: int,
        every_seconds: float,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name, self.total_steps, self.start_step = name, total_steps, start_step
        self.every_seconds, self.enabled, self.clock = every_seconds, enabled, clock
        self.started = self.last = clock()

    def maybe_log(self, step: int, loss: float, samples_per_s: float) -> None:
        now = self.clock()
        if not self.enabled or now - self.last < self.every_seconds:
            return
        self.last = now
        # wall-clock time per step since this process started the fold: evaluations and checkpoints included
        per_step = (now - self.started) / max(step - self.start_step, 1)
        eta = _duration(per_step * (self.total_steps - step))
        info(f"{self.name} step {step}/{self.total_steps}: loss {loss:.4f} {samples_per_s:.0f} samples/s ETA {eta}")


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

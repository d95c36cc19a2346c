"""The Accelerator every stage runs under: precision, trackers, and a torchrun launch on CPUs (gloo)."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from kagglemlc.config import Config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.engine.tracking import require_tracker
from kagglemlc.models.precision import resolve_precision


def make_accelerator(cfg: Config) -> Accelerator:
    """A fresh Accelerator for this config (one per fold; in one process the state is a singleton)."""
    require_tracker(cfg.train.report_to)  # accelerate drops a tracker whose package is absent without a word
    log_with = None if cfg.train.report_to == "none" else cfg.train.report_to
    multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not multi_process:
        # single process: forget the previous fold's/config's settings (precision may differ)
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    try:
        return Accelerator(
            mixed_precision=resolve_precision(cfg.train.precision),
            log_with=log_with,
            project_dir=str(cfg.run_dir),
            # the loop steps the scheduler once per optimiser step, on every process (its schedule counts global steps)
            step_scheduler_with_optimizer=False,
            # accelerate only recognises a torchrun launch without GPUs as multi-CPU (gloo) when told cpu=True
            cpu=multi_process and not torch.cuda.is_available(),
        )
    except (ImportError, ValueError) as exc:
        raise KaggleMLCError(f"train.report_to / train.precision: {exc}") from None


def reset_peak_memory() -> None:
    """Starts the peak-memory counters afresh, so that `peak_memory_mb` measures one fold, not the process so far
    (folds and a study's cells run one after another in one process). On Linux, writing 5 to /proc/self/clear_refs
    resets the peak resident set size; elsewhere the CPU figure stays the process's peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: torch.device) -> dict[str, float | None]:
    """Peak resident memory of the process and peak allocated GPU memory since `reset_peak_memory`, in MiB."""
    cpu = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"cpu_rss": round(cpu, 1), "gpu_max_allocated": None if gpu is None else round(gpu, 1)}

"""Which floating-point precision training and inference run in on this machine."""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX on x86 Linux: bf16 autocast is then faster than fp32 on the CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """auto → bf16 where supported (GPU, or CPU with AVX512-BF16), else fp16 on GPU, else no (fp32)."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        # natively only: torch calls a T4 or P100 bf16-capable by emulation, several times slower than its fp16
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "bf16" if cpu_supports_bf16() else "no"

"""Which precision the hardware runs fast, and the hardware named in every measured figure.

bf16 autocast pays only where the hardware has bf16 arithmetic: CUDA devices with bf16, CPUs
with AVX-512 BF16 or AMX. Elsewhere (an AVX2-only CPU) torch falls back to reference kernels
that run LeNet++ 13-25x slower than fp32, so ``auto`` picks fp32 there.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) below the first one with bf16 instructions.
_ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU offers torch, as far as the precision choice goes."""

    model: str
    capability: str  # torch's kernel level: "AVX2", "AVX512", ... (honours ATEN_CPU_CAPABILITY)
    avx512_bf16: bool
    amx: bool
    onednn_max_isa: str | None  # ONEDNN_MAX_CPU_ISA, when set
    cores: int | None  # physical cores, when the OS says
    threads: int  # logical CPUs this process may use
    torch_threads: int

    @property
    def native_bf16(self) -> bool:
        """bf16 instructions present and allowed both to torch's kernels and to oneDNN."""
        if not (self.avx512_bf16 or self.amx):
            return False
        if not self.capability.upper().startswith("AVX512"):
            return False  # ATEN_CPU_CAPABILITY=avx2 (or lower) restricts torch to AVX2 kernels
        isa = (self.onednn_max_isa or "ALL").upper()
        return isa not in _ONEDNN_ISAS_WITHOUT_BF16

    def describe(self) -> str:
        """e.g. ``AMD EPYC, AVX2 (no AVX-512, no AMX), bf16 not native, 2 cores / 2 threads``."""
        features = ["AVX-512 BF16" if self.avx512_bf16 else "no AVX-512 BF16"]
        features.append("AMX" if self.amx else "no AMX")
        limit = f", ONEDNN_MAX_CPU_ISA={self.onednn_max_isa}" if self.onednn_max_isa else ""
        native = "bf16 native" if self.native_bf16 else "bf16 not native"
        cores = f"{self.cores} cores / " if self.cores else ""
        return (
            f"{self.model}, {self.capability} ({', '.join(features)}{limit}), {native},"
            f" {cores}{self.threads} threads (torch uses {self.torch_threads})"
        )


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    pairs, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            pairs.add((physical, value.strip()))
    return len(pairs) or None


def probe_cpu() -> CpuInfo:
    """Ask torch about this CPU. Tests monkeypatch this function to play either kind of CPU."""
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        threads = os.cpu_count() or 1
    return CpuInfo(
        model=cpu_model(),
        capability=torch.backends.cpu.get_cpu_capability(),
        avx512_bf16=bool(torch.cpu._is_avx512_bf16_supported()),
        amx=bool(torch.cpu._is_amx_tile_supported()),
        onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA"),
        cores=_physical_cores(),
        threads=threads,
        torch_threads=torch.get_num_threads(),
    )


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 in hardware (not emulated)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return probe_cpu().native_bf16
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the device runs it natively, else ``fp32``; others unchanged."""
    if requested != "auto":
        return requested
    return "bf16" if native_bf16(device) else "fp32"


def precision_warning(precision: str, device: torch.device) -> str | None:
    """One line when bf16 will run on hardware that only emulates it."""
    if precision != "bf16" or native_bf16(device):
        return None
    if device.type == "cpu":
        where = f"a CPU without native bf16 ({probe_cpu().capability}, no AVX-512 BF16 or AMX)"
    else:
        where = f"{device} without native bf16"
    return (
        f"warning: --precision bf16 on {where}: expected to run many times slower than fp32"
        " here; --precision auto picks fp32"
    )


def hardware_description() -> str:
    """The CPU (model, capability, native bf16, cores, threads) and any CUDA GPU."""
    text = probe_cpu().describe()
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            name = torch.cuda.get_device_name(index)
            with torch.cuda.device(index):
                bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            text += f"; GPU {index}: {name} (bf16 {'native' if bf16 else 'not native'})"
    return text


def cpu_summary() -> str:
    """The line benchmarks print first: every figure after it belongs to this machine."""
    info = probe_cpu()
    return f"CPU: {info.describe()}; torch {torch.__version__}"

"""`make bench`: runs every ``benchmarks/bench_*.py`` (each has ``main()``), or those named.

Usage: python -m benchmarks.run [NAME ...]   e.g. python -m benchmarks.run train silhouette
Each benchmark measures cl-analyze against a baseline in the same run and prints the ratio.
The first line names the CPU: model, capability (AVX2 / AVX-512 / AMX), native bf16 or not.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    from cl_analyze.hardware import cpu_summary

    # First: every figure below belongs to this machine (and bf16 is a speed-up only if native).
    print(cpu_summary(), flush=True)
    names = argv or sorted(
        p.stem[len("bench_") :] for p in Path(__file__).parent.glob("bench_*.py")
    )
    for name in names:
        print(f"\n=== bench_{name} ===", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])

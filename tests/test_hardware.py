"""`--precision auto`: resolved by the hardware probe (mocked both ways), recorded as resolved;
under bf16 the feature layer and the classifier still run in fp32."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from cl_analyze import hardware
from cl_analyze.config import TrainConfig
from cl_analyze.data import load_dataset, normalise
from cl_analyze.hardware import CpuInfo, precision_warning, probe_cpu, resolve_precision
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore
from cl_analyze.training.checkpoints import load_checkpoint, model_from_checkpoint
from cl_analyze.training.fit import fit

CPU = torch.device("cpu")
AVX2_EPYC = CpuInfo(
    model="AMD EPYC",
    capability="AVX2",
    avx512_bf16=False,
    amx=False,
    onednn_max_isa=None,
    cores=2,
    threads=2,
    torch_threads=2,
)
SAPPHIRE_RAPIDS = dataclasses.replace(
    AVX2_EPYC,
    model="Intel(R) Xeon(R) Platinum 8480+",
    capability="AVX512",
    avx512_bf16=True,
    amx=True,
)


def play(monkeypatch: pytest.MonkeyPatch, cpu: CpuInfo) -> None:
    monkeypatch.setattr(hardware, "probe_cpu", lambda: cpu)


@pytest.mark.parametrize(("cpu", "expected"), [(AVX2_EPYC, "fp32"), (SAPPHIRE_RAPIDS, "bf16")])
def test_auto_follows_the_capability_probe(
    monkeypatch: pytest.MonkeyPatch, cpu: CpuInfo, expected: str
) -> None:
    play(monkeypatch, cpu)
    assert resolve_precision("auto", CPU) == expected
    # An explicit choice is kept whatever the hardware; only emulated bf16 is warned about.
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert precision_warning("fp32", CPU) is None
    warning = precision_warning("bf16", CPU)
    if expected == "fp32":
        assert warning is not None and "many times slower" in warning and "\n" not in warning
    else:
        assert warning is None


@pytest.mark.parametrize(
    ("changes", "native"),
    [
        ({}, True),
        ({"amx": False}, True),  # AVX-512 BF16 alone (Cooper Lake, Zen 4)
        ({"avx512_bf16": False}, True),  # AMX alone
        ({"avx512_bf16": False, "amx": False}, False),  # AVX-512 without bf16 (Skylake)
        ({"capability": "AVX2"}, False),  # ATEN_CPU_CAPABILITY=avx2 keeps torch on AVX2
        ({"onednn_max_isa": "AVX2"}, False),
        ({"onednn_max_isa": "avx512_core"}, False),
        ({"onednn_max_isa": "AVX512_CORE_BF16"}, True),
        ({"onednn_max_isa": "ALL"}, True),
    ],
)
def test_native_bf16_needs_the_instructions_and_no_restriction(
    changes: dict[str, object], native: bool
) -> None:
    assert dataclasses.replace(SAPPHIRE_RAPIDS, **changes).native_bf16 is native  # type: ignore[arg-type]


def test_probe_reads_torch_and_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Play a CPU with bf16 instructions at the torch level, then restrict oneDNN.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert probe_cpu().native_bf16 and resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not probe_cpu().native_bf16 and resolve_precision("auto", CPU) == "fp32"


def test_aten_cpu_capability_avx2_gives_fp32_even_with_bf16_instructions() -> None:
    """The real capability probe under ATEN_CPU_CAPABILITY=avx2, bf16 instructions played."""
    code = (
        "import torch; torch.cpu._is_avx512_bf16_supported = lambda: True;"
        "torch.cpu._is_amx_tile_supported = lambda: True;"
        "from cl_analyze.hardware import probe_cpu, resolve_precision;"
        "print(probe_cpu().capability, resolve_precision('auto', torch.device('cpu')))"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    output = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    assert output.split() == ["AVX2", "fp32"]


def test_hardware_names_the_cpu_and_its_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from cl_analyze.hardware import hardware_description

    play(monkeypatch, AVX2_EPYC)
    text = hardware_description()
    assert text.startswith("AMD EPYC, AVX2 (no AVX-512 BF16, no AMX), bf16 not native")
    assert "2 cores / 2 threads" in text
    play(monkeypatch, SAPPHIRE_RAPIDS)
    assert "AVX512 (AVX-512 BF16, AMX), bf16 native" in hardware_description()
    real = probe_cpu()  # the machine running the tests
    assert real.model and real.capability == torch.backends.cpu.get_cpu_capability()


def test_auto_run_records_the_resolved_precision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    play(monkeypatch, AVX2_EPYC)
    config = tiny_config(loss="softmax", epochs=1, limit_train=64, limit_test=32, precision="auto")
    assert TrainConfig().precision == "auto"  # the default
    fit(config, tmp_path / "run", reporter=Reporter(quiet=True))
    first_line = capsys.readouterr().err.splitlines()[0]
    assert first_line.startswith("run folder:") and first_line.endswith(", fp32)")
    with RunStore(tmp_path / "run") as store:
        assert store.config["precision"] == "fp32"
        assert store.attrs["precision"] == "fp32"
        assert "AMD EPYC, AVX2" in store.attrs["hardware"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "fp32"
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["precision"] == "fp32"


def test_resume_keeps_the_stored_precision() -> None:
    old = TrainConfig(precision="bf16")  # e.g. a run trained before auto existed
    assert old.merge_for_resume({"precision": "auto"}).precision == "bf16"
    assert TrainConfig.from_dict({"precision": "fp32"}).merge_for_resume({}).precision == "fp32"
    with pytest.raises(Exception, match="--precision fp32 contradicts"):
        old.merge_for_resume({"precision": "fp32"})


def _bf16_representable(values: np.ndarray) -> np.ndarray:
    as_bf16 = torch.from_numpy(values).to(torch.bfloat16).float().numpy()
    return as_bf16 == values


def test_bf16_run_stores_fp32_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Explicit bf16 on a CPU without native bf16: warned, runs, features not bf16-rounded.
    Tiny, as emulated bf16 runs LeNet++ at ~10 img/s on an AVX2 CPU."""
    play(monkeypatch, AVX2_EPYC)
    config = tiny_config(
        loss="center",
        epochs=1,
        limit_train=4,
        limit_test=8,
        batch_size=4,
        precision="bf16",
        embed=False,
    )
    fit(config, tmp_path / "run", reporter=Reporter(quiet=True))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(", bf16)") and "many times slower" in lines[1]
    with RunStore(tmp_path / "run") as store:
        assert store.attrs["precision"] == "bf16"
        stored = store.features("test", -1)
        predictions = store.predictions("test", -1)
        centers = store.centers(-1)
    assert centers is not None
    # A bf16 feature layer would make every value bf16-representable (8-bit mantissa).
    for values in (stored, centers):
        assert _bf16_representable(values).mean() < 0.2
    assert len(np.unique(stored)) == stored.size

    # Independently: the convolutions in bf16, the rest in float64 from the checkpoint's weights.
    model, _ = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "last.pt"))
    model.eval()
    dataset = load_dataset("mnist-5k", limit_test=8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model.trunk(normalise(dataset.test.images, dataset.mean, dataset.std))
    assert hidden.dtype == torch.bfloat16
    double = model.double()
    with torch.no_grad():
        features = double.prelu_fc1(F.linear(hidden.double(), double.fc1.weight, double.fc1.bias))
        logits = double.fc2(features)
    np.testing.assert_allclose(stored, features.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(predictions, logits.argmax(1).numpy())

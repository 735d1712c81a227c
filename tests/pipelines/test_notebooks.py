"""Execute the notebooks end to end on a small demo, so they never rot.

Each notebook runs in a fresh kernel of this environment (``python3``, from the venv's
ipykernel) with ``PERSONAS_NOTEBOOK_DEMO=1``: demo data, outputs and the MLflow store go
to temporary folders, never to ``mlruns/`` or ``outputs/``. A failing cell fails the test
with that cell's source and traceback.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 300


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    assert [p.name for p in _notebooks()] == [
        "01-explore-personas.ipynb",
        "02-compare-runs.ipynb",
    ]
    for path in _notebooks():
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        dirty = [
            i
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
        ]
        assert not dirty, f"{path.name}: clear the outputs of cells {dirty} before saving"


@pytest.mark.slow
@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAS_NOTEBOOK_DEMO", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temp folders land here
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")  # this venv's python3 kernel first
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter"))  # connection files
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # no history in the home folder
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
    figures = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert figures, f"{path.name} showed no figure inline"
    stores = list(tmp_path.glob("personas-notebook-*/mlflow.db"))
    assert stores, f"{path.name} did not track into a temporary MLflow store in demo mode"

"""The README's worked example runs as written, on an export under the app's own names."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

README = Path(__file__).resolve().parents[2] / "README.md"
END = pd.Timestamp("2026-06-30")

#: Four behaviour groups: size, screens used, events a week, plan, NPS range, still active.
GROUPS = {
    "creators": (300, ["editor", "export", "share"], 12, "monthly", (8, 11), True),
    "browsers": (250, ["feed", "search"], 3, "monthly", (5, 9), True),
    "planners": (150, ["calendar", "planner", "reminders"], 6, "annual", (7, 11), True),
    "lapsed": (200, ["feed", "editor"], 2, "monthly", (0, 6), False),
}


def _block(marker: str) -> str:
    """Return the fenced block that follows ``<!-- example: marker -->`` in the README."""
    text = README.read_text()
    found = re.search(rf"<!-- example: {re.escape(marker)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert found, f"README has no example block {marker!r}"
    return found.group(1)


def write_app_export(folder: Path, seed: int = 0) -> pd.Series:
    """Write the app's export (users, payments, app_events, survey); return the planted group."""
    rng = np.random.default_rng(seed)
    users, payments, events, survey, planted = [], [], [], [], {}
    uid = 1000
    for group, (n, screens, weekly, plan, (lo, hi), active) in GROUPS.items():
        for _ in range(n):
            uid += 1
            signup = END - pd.Timedelta(days=int(rng.integers(400, 540)))
            stop = END if active else END - pd.Timedelta(days=int(rng.integers(150, 240)))
            users.append((uid, signup.date().isoformat(), plan, rng.choice(["DE", "FR", "ES"])))
            planted[uid] = group
            step, price = (30, 9.99) if plan == "monthly" else (365, 99.0)
            day = signup
            while day <= stop:
                stamp = day + pd.Timedelta(hours=int(rng.integers(0, 24)))
                payments.append((uid, stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), price))
                day += pd.Timedelta(days=step)
            days = (stop - signup).days
            for _ in range(int(rng.poisson(weekly * days / 7 / 4))):  # thinned for speed
                at = signup + pd.Timedelta(days=float(rng.uniform(0, days)))
                events.append((uid, at.strftime("%Y-%m-%d %H:%M:%S"), rng.choice(screens)))
            if rng.random() < 0.6:
                answered = stop - pd.Timedelta(days=int(rng.integers(1, 60)))
                words = "love the editor" if lo >= 7 else "too slow, cancelling"
                survey.append((uid, answered.date().isoformat(), int(rng.integers(lo, hi)), words))
    folder.mkdir(parents=True)
    tables = {
        "users": (users, ["user_id", "signup", "plan", "country"]),
        "payments": (payments, ["user_id", "paid_at", "amount_eur"]),
        "app_events": (events, ["user_id", "ts", "screen"]),
        "survey": (survey, ["user_id", "answered_at", "likelihood_to_recommend", "free_text"]),
    }
    for name, (rows, columns) in tables.items():
        pd.DataFrame(rows, columns=columns).to_csv(folder / f"{name}.csv", index=False)
    return pd.Series(planted, name="group")


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path):
    planted = write_app_export(tmp_path / "exports" / "app")
    (tmp_path / "my-app.yaml").write_text(_block("my-app.yaml"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for line in _block("commands").strip().splitlines():
        args = shlex.split(line)
        assert args[0] == "personas"
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", *args[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    out = tmp_path / "outputs" / "app"
    found = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    assert sorted(found["customer_id"]) == sorted(map(str, planted.index))  # every user once
    truth = planted.rename(index=str).loc[found["customer_id"]]
    assert adjusted_rand_score(truth, found["persona_id"]) >= 0.8
    value = json.loads((out / "clv_model.json").read_text())
    assert value["kind"] == "subscription"
    assert sorted(round(c["cycle_days"] / 30) for c in value["cycles"]) == [1, 12]
    personas = (out / "personas.json").read_text()
    assert "customer success" not in personas and "executive sponsor" not in personas
    scored = pd.read_csv(tmp_path / "scored.csv", dtype={"customer_id": str})
    merged = scored.merge(found, on="customer_id")
    assert len(merged) == len(found)
    assert (merged["persona_id_x"] == merged["persona_id_y"]).all()

"""B2B end to end: `personas demo --b2b`, then `personas train` at level: account.

One demo of 300 accounts (about 1,900 people) with five planted account personas, two of
which carry a planted gap between their decision makers' NPS and their end users'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import adjusted_rand_score

from features.influence import influence_levels
from pipelines.compare import Previous
from pipelines.config import load_config
from pipelines.demo.accounts import ACCOUNT_PERSONAS, LEVELS, ROLE_TITLES

PERSONAS = [sys.executable, "-m", "pipelines"]
ACCOUNTS, SEED = 300, 5

#: Planted sign of the decision makers minus end users gap, per planted persona (0: none).
PLANTED_GAP = {
    name: int(np.sign(round(p["nps"][LEVELS.index("decision_maker")] - p["nps"][-1], 1)))
    for name, p in ACCOUNT_PERSONAS.items()
}


def run_cli(*args, env):
    result = subprocess.run(
        [*PERSONAS, *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_b2b")
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    base = tmp_path_factory.mktemp("b2b")
    data, out, config = base / "data", base / "out", base / "b2b.yaml"
    run_cli("demo", "--b2b", "--out", data, "--accounts", ACCOUNTS, "--seed", SEED, env=store)
    config.write_text("level: account\n")
    result = run_cli("train", "--data", data, "--config", config, "--output", out, env=store)
    personas = json.loads((out / "personas.json").read_text())
    return data, out, result, personas


@pytest.fixture(scope="module")
def matched(trained):
    """The planted persona that makes up most of each found persona."""
    data, out, _, _ = trained
    truth = pd.read_csv(data / "planted_accounts.csv", dtype=str).set_index("account_id")
    found = pd.read_csv(out / "assignments.csv", dtype={"account_id": str})
    found = found.set_index("account_id").loc[truth.index, "persona_id"]
    return pd.crosstab(found, truth["persona"]).idxmax(axis=1).to_dict()


def test_demo_has_accounts_people_and_roles(trained):
    data, _, _, _ = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    assert {"account_id", "role", "name", "email"} <= set(customers.columns)
    sizes = customers.groupby("account_id").size()
    assert len(sizes) == ACCOUNTS and sizes.between(2, 15).all()
    planted = pd.read_csv(data / "planted_accounts.csv", dtype=str)
    assert set(planted["account_id"]) == set(sizes.index)
    assert set(planted["persona"]) == set(ACCOUNT_PERSONAS)


def test_train_prints_accounts_and_people_file(trained):
    _, out, result, _ = trained
    assert "accounts" in result.stdout
    assert f"People in their account's persona: {out / 'people_assignments.csv'}" in result.stdout
    assert "Traceback" not in result.stderr


def test_every_account_exactly_once(trained):
    data, out, _, personas = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    assignments = pd.read_csv(out / "assignments.csv", dtype={"account_id": str})
    assert list(assignments.columns) == [
        "account_id",
        "persona_id",
        "persona_name",
        "confidence",
        "is_outlier",
    ]
    assert assignments["account_id"].is_unique
    assert set(assignments["account_id"]) == set(customers["account_id"])
    assert sum(p["size"] for p in personas) == ACCOUNTS


def test_every_person_exactly_once_in_their_accounts_persona(trained):
    data, out, _, personas = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    people = pd.read_csv(out / "people_assignments.csv", dtype=str)
    assert list(people.columns) == [
        "customer_id",
        "account_id",
        "influence",
        "persona_id",
        "persona_name",
    ]
    assert people["customer_id"].is_unique
    assert set(people["customer_id"]) == set(customers["customer_id"])
    of_account = customers.set_index("customer_id")["account_id"]
    assert (people.set_index("customer_id")["account_id"] == of_account).all()
    accounts = pd.read_csv(out / "assignments.csv", dtype=str).set_index("account_id")
    assert (people["persona_id"] == people["account_id"].map(accounts["persona_id"])).all()
    assert sum(p["people"] for p in personas) == len(customers)


def test_planted_account_personas_are_recovered(trained):
    data, out, _, _ = trained
    truth = pd.read_csv(data / "planted_accounts.csv", dtype=str).set_index("account_id")
    found = pd.read_csv(out / "assignments.csv", dtype={"account_id": str})
    found = found.set_index("account_id").loc[truth.index]
    assert adjusted_rand_score(truth["persona"], found["persona_id"]) >= 0.8


def test_influence_levels_of_the_demo_roles():
    cfg = load_config()["b2b"]
    for level, titles in ROLE_TITLES.items():
        mapped = influence_levels(pd.Series(titles), cfg["influence"], other=cfg["other_roles"])
        assert mapped.tolist() == [level] * len(titles), (level, titles)


def test_planted_gap_is_called_out_and_no_other(trained, matched):
    _, _, _, personas = trained
    for p in personas:
        planted = PLANTED_GAP[matched[p["persona_id"]]]
        gap = p["influence_gap"]
        assert gap["tested"], p["name"]
        assert gap["called_out"] == (planted != 0), (matched[p["persona_id"]], gap)
        if planted:
            assert np.sign(gap["gap"]) == planted
            assert abs(gap["gap"]) >= 40
            assert gap["gap_ci_low"] <= gap["gap"] <= gap["gap_ci_high"]
            assert gap["p_value"] < 0.05
            assert gap["between"] == ["decision_makers", "end_users"]


def test_nps_by_influence_matches_raw_feedback(trained):
    data, out, _, personas = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str).set_index("customer_id")
    feedback = pd.read_csv(data / "feedback.csv", dtype={"customer_id": str})
    feedback["timestamp"] = pd.to_datetime(feedback["timestamp"])
    latest = feedback.sort_values(["customer_id", "timestamp"]).groupby("customer_id")["nps"]
    latest = latest.last()
    people = pd.read_csv(out / "people_assignments.csv", dtype={"customer_id": str})
    people = people.set_index("customer_id").join(latest)
    cfg = load_config()["b2b"]
    levels = influence_levels(customers["role"], cfg["influence"], other=cfg["other_roles"])
    assert (people["influence"] == levels.reindex(people.index)).all()

    def nps(scores):
        s = scores.dropna()
        return round(100 * ((s >= 9).sum() - (s <= 6).sum()) / len(s), 2), len(s)

    for p in personas:
        mine = people[people["persona_id"] == p["persona_id"]]
        assert (p["people_nps"]["nps"], p["people_nps"]["respondents"]) == nps(mine["nps"])
        for row in p["nps_by_influence"]:
            level = mine[mine["influence"] == row["level"]]
            assert row["people"] == len(level)
            if row["shown"]:
                assert (row["nps"], row["respondents"]) == nps(level["nps"])
            else:  # too few respondents to show their score without singling people out
                assert row["nps"] is None and row["respondents"] < 20
        # the persona's own NPS counts one score per account: its respondents' mean, rounded
        per_account = np.floor(mine.groupby("account_id")["nps"].mean().dropna() + 0.5)
        assert (p["nps"], p["respondents"]) == nps(per_account)
        assert p["account_nps"] == "mean"


def test_gap_shows_in_the_reports(trained):
    _, out, _, personas = trained
    called = [p for p in personas if p["influence_gap"]["called_out"]]
    assert called
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert f"{ACCOUNTS} accounts" in markdown
    assert "| persona | accounts | revenue |" in markdown  # sizes count accounts, not people
    assert "<th>persona</th><th>accounts</th>" in page and "value per account" in page
    assert "A gap between decision makers and end users is called out when" in markdown
    for p in called:
        assert p["influence_gap"]["text"] in markdown
        assert p["influence_gap"]["text"].replace("'", "&#x27;") in page
    assert page.count("class='badge gap'") == len(called)
    assert page.count("The people in these accounts, by influence") == len(personas)


def test_outputs_hold_no_personal_data(trained):
    data, out, _, _ = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    features = pd.read_parquet(out / "features.parquet")
    assert "account_id" in features.columns and len(features) == ACCOUNTS
    assert not {"email", "name", "attr_role"} & set(features.columns)
    text = "".join(p.read_text(errors="ignore") for p in out.iterdir() if p.suffix != ".parquet")
    for value in customers["email"].head(50).tolist() + customers["name"].head(50).tolist():
        assert value not in text


def test_run_logs_the_level_and_people(trained, store):
    _, _, result, _ = trained
    run_id = result.stdout.split("MLflow run: ")[1].split()[0]
    client = MlflowClient(tracking_uri=store["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_id)
    assert run.data.tags["level"] == "account"
    assert run.data.metrics["n_accounts"] == ACCOUNTS
    assert "persona.0.people_nps" in run.data.metrics
    logged = {a.path for a in client.list_artifacts(run_id)}
    assert {"assignments.csv", "people_assignments.csv", "personas.json"} <= logged


def test_score_places_accounts_like_training(trained, store, tmp_path):
    data, out, result, _ = trained
    config = tmp_path / "b2b.yaml"
    config.write_text("level: account\n")
    run_cli("score", "--data", data, "--output", tmp_path / "s.csv", "--config", config, env=store)
    scored = pd.read_csv(tmp_path / "s.csv", dtype={"account_id": str}).set_index("account_id")
    trained_ = pd.read_csv(out / "assignments.csv", dtype={"account_id": str})
    trained_ = trained_.set_index("account_id").loc[scored.index]
    assert len(scored) == ACCOUNTS
    assert (scored["persona_id"] == trained_["persona_id"]).all()


def test_score_needs_no_config_and_places_any_accounts_like_training(trained, store, tmp_path):
    data, out, _, _ = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    accounts = sorted(customers["account_id"].unique())[::3]  # a third of the accounts
    ids = set(customers.loc[customers["account_id"].isin(accounts), "customer_id"])
    batch = tmp_path / "batch"
    batch.mkdir()
    for path in data.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "customer_id" in frame and not path.name.startswith("planted"):
            frame[frame["customer_id"].isin(ids)].to_csv(batch / path.name, index=False)
    run_cli("score", "--data", batch, "--output", tmp_path / "s.csv", env=store)
    scored = pd.read_csv(tmp_path / "s.csv", dtype={"account_id": str}).set_index("account_id")
    trained_ = pd.read_csv(out / "assignments.csv", dtype={"account_id": str})
    assert sorted(scored.index) == accounts
    assert (
        scored["persona_id"] == trained_.set_index("account_id").loc[scored.index, "persona_id"]
    ).all()


def test_an_account_level_champion_is_read_by_account(trained):
    _, out, _, _ = trained
    previous = Previous("run", out)
    assert previous.level == "account"
    assignments = pd.read_csv(out / "assignments.csv", dtype={"account_id": str})
    assert previous.assignments["customer_id"].tolist() == assignments["account_id"].tolist()
    assert previous.features.index.tolist() == sorted(assignments["account_id"])


def test_validate_checks_every_person_has_an_account(trained, store, tmp_path):
    data, _, _, _ = trained
    config = tmp_path / "b2b.yaml"
    config.write_text("level: account\n")
    result = run_cli("validate", "--data", data, "--config", config, env=store)
    assert f"level account: {ACCOUNTS:,} accounts" in result.stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in data.glob("*.csv"):
        (broken / f.name).write_bytes(f.read_bytes())
    customers = pd.read_csv(broken / "customers.csv", dtype=str)
    customers.loc[:1, "account_id"] = None
    customers.to_csv(broken / "customers.csv", index=False)
    result = subprocess.run(
        [*PERSONAS, "validate", "--data", str(broken), "--config", str(config)],
        capture_output=True, text=True, env=store, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1
    assert "2 of" in result.stderr and "people have no account_id" in result.stderr

"""End to end through the `personas` command, into a real temporary MLflow store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import adjusted_rand_score

from models.nps import nps_summary

PERSONAS = [sys.executable, "-m", "pipelines"]


def run_cli(*args, env=None, check=True):
    result = subprocess.run(
        [*PERSONAS, *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    base = tmp_path_factory.mktemp("e2e")
    data, out = base / "data", base / "out"
    run_cli("demo", "--out", data, "--customers", 3000, "--seed", 11, env=store)
    result = run_cli("train", "--data", data, "--output", out, env=store)
    return data, out, result


def test_train_prints_personas_report_and_run(trained):
    _, out, result = trained
    assert "Personas" in result.stdout
    assert f"Report: {out / 'report.html'}" in result.stdout
    assert "MLflow run: " in result.stdout
    assert "Traceback" not in result.stderr


def test_stderr_holds_only_the_pipelines_own_log_lines(trained):
    _, _, result = trained
    own = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING) ")
    stray = [line for line in result.stderr.splitlines() if line.strip() and not own.match(line)]
    assert not stray, stray[:5]  # no MLflow notices, progress bars or library warnings
    assert "mlflow.pyfunc" not in result.stderr and "Registered model" not in result.stderr


def test_stages_that_take_long_log_their_counts(trained):
    """Off a terminal, each counted stage logs its count when its loop completes."""
    _, out, result = trained
    counts = re.findall(r"INFO +(.+?): (\d+)/(\d+) (\w+)", result.stderr)
    done = {(stage, unit): (int(a), int(b)) for stage, a, b, unit in counts}
    for stage, unit in [
        ("Load and validate", "tables"), ("Features", "feature"),
        ("Customer lifetime value", "steps"), ("Model", "candidates"), ("Model", "resamples"),
        ("Drivers and themes", "folds"), ("Profile", "features"),
        ("Write outputs and report", "files"),
    ]:  # fmt: skip
        assert (stage, unit) in done, (stage, unit, counts)
        assert done[stage, unit][0] == done[stage, unit][1]
    written = [p for p in out.iterdir() if p.suffix != ".md"]  # report.md comes with the html
    assert done["Write outputs and report", "files"][1] == len(written)


def test_every_customer_exactly_once(trained):
    data, out, _ = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    assignments = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    assert list(assignments.columns) == [
        "customer_id",
        "persona_id",
        "persona_name",
        "confidence",
        "is_outlier",
    ]
    assert assignments["customer_id"].is_unique
    assert set(assignments["customer_id"]) == set(customers["customer_id"])
    assert assignments["confidence"].between(0, 1).all()


def test_planted_personas_are_recovered(trained):
    data, out, _ = trained
    truth = pd.read_csv(data / "planted_personas.csv", dtype=str).set_index("customer_id")
    found = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    found = found.set_index("customer_id").loc[truth.index]
    # the demo's planted personas, found as an analyst would (issue: ARI >= 0.95)
    assert adjusted_rand_score(truth["persona"], found["persona_id"]) >= 0.95


def test_persona_nps_matches_raw_feedback(trained):
    data, out, _ = trained
    feedback = pd.read_csv(data / "feedback.csv", dtype={"customer_id": str})
    feedback["timestamp"] = pd.to_datetime(feedback["timestamp"])
    latest = (
        feedback.dropna(subset=["nps"])
        .sort_values(["customer_id", "timestamp"])
        .groupby("customer_id")["nps"]
        .last()
    )
    assignments = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    personas = json.loads((out / "personas.json").read_text())
    for persona in personas:
        ids = assignments.loc[assignments["persona_id"] == persona["persona_id"], "customer_id"]
        scores = latest.reindex(ids).dropna()
        promoters, detractors = (scores >= 9).sum(), (scores <= 6).sum()
        assert persona["respondents"] == len(scores)
        expected = 100 * (promoters - detractors) / len(scores)
        assert persona["nps"] == pytest.approx(expected, abs=0.5)
        assert persona["nps_ci_low"] <= persona["nps"] <= persona["nps_ci_high"]
        assert persona == {**persona, **{k: v for k, v in nps_summary(scores).items()}}


def test_personas_have_names_and_traits(trained):
    _, out, _ = trained
    personas = json.loads((out / "personas.json").read_text())
    names = [p["name"] for p in personas]
    assert len(set(names)) == len(names)
    assert all(not n.startswith("Persona ") for n in names)
    assert [p["size"] for p in personas] == sorted((p["size"] for p in personas), reverse=True)
    assert sum(p["share"] for p in personas) == pytest.approx(1.0, abs=1e-3)
    for p in personas:
        assert p["traits"], p["name"]
        assert {"feature", "persona_value", "population_value", "std_diff"} <= set(p["traits"][0])


def test_outputs_hold_no_personal_data(trained):
    data, out, _ = trained
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    features = pd.read_parquet(out / "features.parquet")
    assert not {"email", "name"} & set(features.columns)
    text = "".join(p.read_text(errors="ignore") for p in out.iterdir() if p.suffix != ".parquet")
    for value in customers["email"].head(50).tolist() + customers["name"].head(50).tolist():
        assert value not in text


def test_run_is_logged_with_params_metrics_and_artifacts(trained, store):
    _, out, result = trained
    run_id = result.stdout.split("MLflow run: ")[1].split()[0]
    client = MlflowClient(tracking_uri=store["MLFLOW_TRACKING_URI"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == "42"
    assert run.data.metrics["n_personas"] >= 2
    assert "persona.0.nps" in run.data.metrics
    assert run.data.tags["data_fingerprint"]
    logged = {a.path for a in client.list_artifacts(run_id)}
    assert {"assignments.csv", "personas.json", "features.parquet", "report.html"} <= logged


def test_report_is_self_contained(trained):
    _, out, _ = trained
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    assert "http://" not in html and "https://" not in html
    personas = json.loads((out / "personas.json").read_text())
    assert html.count("class='card'") == len(personas)


def test_same_seed_same_personas(trained, tmp_path, store):
    data, out, _ = trained
    # a fresh store: with the first run as champion, the second would be a re-segmentation
    fresh = {**store, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'fresh.db'}"}
    run_cli("train", "--data", data, "--output", tmp_path / "again", env=fresh)
    for name in ("assignments.csv", "personas.json"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_bad_input_fails_cleanly_and_marks_run_failed(tmp_path, store):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "customers.csv").write_text("customer_id\nA\nB\n")
    (data / "feedback.csv").write_text(
        "customer_id,timestamp,nps\nA,2026-01-01,11\nB,2026-01-02,ten\n"
    )
    result = run_cli("train", "--data", data, "--output", tmp_path / "out", env=store, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "feedback.csv" in result.stderr and "'nps'" in result.stderr
    assert not (tmp_path / "out").exists()
    client = MlflowClient(tracking_uri=store["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(store["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [client.get_experiment_by_name("personas").experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.tags["error_type"] == "DataError"


def test_debug_shows_traceback(tmp_path, store):
    result = run_cli("--debug", "validate", "--data", tmp_path / "nope", env=store, check=False)
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_bad_usage_exits_2(store, tmp_path):
    result = run_cli("train", env=store, check=False)
    assert result.returncode == 2
    result = run_cli("demo", "--out", tmp_path / "d", "--format", "xml", env=store, check=False)
    assert result.returncode == 2
    assert "--format must be csv or parquet" in result.stderr
    assert not (tmp_path / "d").exists()


def test_validate_prints_quality_summary(trained, store):
    data, _, _ = trained
    result = run_cli("validate", "--data", data, env=store)
    assert "Data quality" in result.stdout
    assert "personal-data columns ignored: name, email" in result.stdout


def test_score_agrees_with_training_and_is_batch_invariant(trained, store, tmp_path):
    data, out, result = trained
    run_id = result.stdout.split("MLflow run: ")[1].split()[0]
    client = MlflowClient(tracking_uri=store["MLFLOW_TRACKING_URI"])
    model_uri = client.get_run(run_id).data.tags["model_uri"]
    run_cli(
        "score", "--data", data, "--model", model_uri, "--output", tmp_path / "s.csv", env=store
    )
    scored = pd.read_csv(tmp_path / "s.csv", dtype={"customer_id": str}).set_index("customer_id")
    trained_ = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    trained_ = trained_.set_index("customer_id").loc[scored.index]
    assert (scored["persona_id"] == trained_["persona_id"]).mean() >= 0.99
    # a smaller batch: the same customers get the same personas
    small = tmp_path / "small"
    small.mkdir()
    keep = set(scored.index[:200])
    for f in data.glob("*.csv"):
        frame = pd.read_csv(f, dtype={"customer_id": str})
        if "customer_id" in frame:
            frame = frame[frame["customer_id"].isin(keep)]
        frame.to_csv(small / f.name, index=False)
    config = tmp_path / "asof.yaml"
    config.write_text(f"as_of: '{json.loads((out / 'data_quality.json').read_text())['as_of']}'\n")
    run_cli(
        "score",
        "--data",
        small,
        "--model",
        model_uri,
        "--output",
        tmp_path / "b.csv",
        "--config",
        config,
        env=store,
    )
    batch = pd.read_csv(tmp_path / "b.csv", dtype={"customer_id": str}).set_index("customer_id")
    assert (batch["persona_id"] == scored.loc[batch.index, "persona_id"]).all()


def test_score_default_uses_the_champion(trained, store, tmp_path):
    data, _, _ = trained
    result = run_cli("score", "--data", data, "--output", tmp_path / "c.csv", env=store)
    assert "Scored 3,000 customers" in result.stdout


# --------------------------------------------------------------------------- brackets survive


def test_spark_install_hint_keeps_the_extra_in_brackets(tmp_path):
    # PySpark is installed here: block its import, as in an environment without the extra
    code = (
        "import sys; sys.modules['pyspark'] = None; from pipelines.cli import main; "
        f"sys.argv = ['personas', 'train', '--data', {str(tmp_path)!r}, '--engine', 'spark']; "
        "main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    assert 'pip install "personas[spark]"' in result.stderr


def test_user_text_in_messages_keeps_its_brackets(tmp_path, store):
    config = tmp_path / "odd.yaml"
    config.write_text("level: '[b2b]'\n")
    result = run_cli("validate", "--data", tmp_path, "--config", config, env=store, check=False)
    assert result.returncode == 1
    assert "level should be customer or account, got '[b2b]'" in result.stderr
    data = tmp_path / "data"
    data.mkdir()
    (data / "customers.csv").write_text("customer_id,[email] work\nA,a@example.com\nB,b@x.org\n")
    (data / "feedback.csv").write_text(
        "customer_id,timestamp,nps\nA,2026-01-01,9\nB,2026-01-02,[ten]\n"
    )
    config.write_text("validation: {on_error: quarantine}\n")
    result = run_cli("validate", "--data", data, "--config", config, env=store)
    shown = " ".join(result.stdout.split())  # the summary wraps long lines (long temp paths)
    assert "personal-data columns ignored: [email] work" in shown
    assert "(e.g. '[ten]')" in shown


@pytest.mark.parametrize(
    "uri", ["runs:/0123456789abcdef", "models:/no_such_model@champion", "runs:/nope/persona_model"]
)
def test_a_model_that_cannot_be_loaded_is_one_paragraph(uri, store, tmp_path):
    result = run_cli(
        "score", "--data", tmp_path, "--model", uri, "--output", tmp_path / "s.csv",
        env=store, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    message = result.stderr[result.stderr.index("error:") :].strip()
    assert f"The model {uri} cannot be loaded" in " ".join(message.split())
    assert "unexpected" not in message and "Traceback" not in result.stderr
    assert "\n\n" not in message and not (tmp_path / "s.csv").exists()

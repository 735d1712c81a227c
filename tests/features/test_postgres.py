"""PostgreSQL end to end, on a throwaway server: read the tables, publish the personas, track.

The session's server (`conftest.pg_server`) asks for a password; every test checks, where
it can, that the password shows nowhere: not in messages, outputs, logs or MLflow stores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pgserver
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import adjusted_rand_score

from features import DataError, load_data
from features.postgres import parse_url, shown
from pipelines import publish as publish_mod
from pipelines import tracking
from pipelines.config import ConfigError, load_config
from pipelines.publish import publish, publish_outputs, publish_scores, score_run_id

PERSONAS = [sys.executable, "-m", "pipelines"]
ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, env, check=True, timeout=900):
    result = subprocess.run(
        [*PERSONAS, *map(str, args)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def clean_env(**extra) -> dict[str, str]:
    """The environment without any libpq password setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    return {**env, "PGPASSFILE": "/nonexistent/pgpass", **extra}


@pytest.fixture
def pg_env(pg_server):
    return clean_env(PGPASSWORD=pg_server.password)


@pytest.fixture
def with_password(pg_server, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    return pg_server.password


def write_config(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def assert_one_paragraph(result, *needles, password=None):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr  # one paragraph: one line, the last
    message = errors[0]
    assert result.stderr.strip().endswith(message), result.stderr
    for needle in needles:
        assert needle in message, message
    if password:
        assert password not in result.stdout + result.stderr


# --------------------------------------------------------------------------- reading


def test_url_parsing_keeps_libpq_parameters_and_strips_the_schema():
    url = parse_url("postgresql://ana@db:5433/shop?schema=sales&sslmode=require")
    assert url.schema == "sales"
    assert "schema=" not in url.dsn and "sslmode=require" in url.dsn
    assert "connect_timeout=" in url.dsn
    assert parse_url("postgresql://ana@db/shop").schema == "public"
    assert shown("postgresql://ana:s3cret@db/shop") == "postgresql://ana:***@db/shop"
    with pytest.raises(DataError, match="holds a password") as info:
        parse_url("postgresql://ana:s3cret@db/shop")
    assert "s3cret" not in str(info.value)


def test_validate_reads_the_schema(pg_demo, pg_env, pg_server):
    _, url = pg_demo
    result = run_cli("validate", "--data", url, env=pg_env)
    assert "OK: 800 customers" in result.stdout
    assert "support_tickets" in result.stdout
    assert pg_server.password not in result.stdout + result.stderr


def test_tables_are_the_same_as_from_parquet(pg_demo, with_password):
    folder, url = pg_demo
    from_files, from_pg = load_data(folder), load_data(url)
    try:
        assert from_pg.tables == from_files.tables
        assert from_pg.as_of == from_files.as_of
        assert from_pg.quality["source"] == url
        assert from_pg.quality["tables"]["transactions"]["file"] == "table sales.transactions"
        for table in from_files.tables:
            a = from_files.quality["tables"][table]
            b = from_pg.quality["tables"][table]
            assert {k: v for k, v in a.items() if k != "file"} == {
                k: v for k, v in b.items() if k != "file"
            }
            key = ", ".join(from_files.columns[table])
            left = from_files.con.execute(f"SELECT * FROM {table} ORDER BY {key}").df()
            right = from_pg.con.execute(f"SELECT * FROM {table} ORDER BY {key}").df()
            pd.testing.assert_frame_equal(left, right)
        assert set(from_pg.digests) == set(from_pg.tables)
        assert from_pg.schemas["transactions"]["amount"] == "DOUBLE"
    finally:
        from_files.con.close()
        from_pg.con.close()


def test_a_changed_row_changes_the_fingerprint(pg_server, pg_demo, with_password):
    folder, _ = pg_demo
    pgserver.load_folder(pg_server, "shop", folder, "changed")
    url = pg_server.url("shop", schema="changed")
    before = load_data(url)
    before.con.close()
    with pgserver.connect(pg_server, "shop") as conn, conn.cursor() as cur:
        cur.execute("UPDATE changed.transactions SET amount = amount + 1 WHERE ctid = "
                    "(SELECT min(ctid) FROM changed.transactions)")  # fmt: skip
        conn.commit()
    after = load_data(url)
    after.con.close()
    assert after.fingerprint != before.fingerprint
    assert after.digests["transactions"] != before.digests["transactions"]
    assert after.digests["customers"] == before.digests["customers"]


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ("port", ["Cannot connect to PostgreSQL", "Connection refused"]),
        ("user", ["Cannot connect to PostgreSQL", 'password authentication failed for user "bob"']),
        ("database", ["Cannot connect to PostgreSQL", 'database "nowhere" does not exist']),
        ("host", ["Cannot connect to PostgreSQL", "nohost.invalid"]),
        ("schema", ["has no schema 'nope'", "its schemas are:", "sales"]),
        ("table", ["has no table sales.invoices", "tables.transactions names it", "customers"]),
        ("password", ["Cannot connect to PostgreSQL", "$PGPASSWORD or ~/.pgpass"]),
    ],
)
def test_a_wrong_url_stops_with_one_paragraph(
    pg_server, pg_demo, pg_env, tmp_path, change, needles
):
    _, url = pg_demo
    env, args = pg_env, []
    good = f"127.0.0.1:{pg_server.port}"
    if change == "port":
        url = url.replace(good, "127.0.0.1:1")
    elif change == "user":
        url = url.replace("personas@", "bob@")
    elif change == "database":
        url = url.replace("/shop?", "/nowhere?")
    elif change == "host":
        url = url.replace(good, "nohost.invalid:5432")
    elif change == "schema":
        url = url.replace("schema=sales", "schema=nope")
    elif change == "table":
        config = write_config(tmp_path / "c.yaml", "tables: {transactions: invoices}\n")
        args = ["--config", config]
    elif change == "password":
        env = clean_env()
    result = run_cli("validate", "--data", url, *args, env=env, check=False)
    assert_one_paragraph(result, *needles, password=pg_server.password)


def test_a_password_in_the_url_is_refused_and_never_shown(pg_demo, pg_env):
    _, url = pg_demo
    secret = "hunter2-in-the-url"
    with_secret = url.replace("personas@", f"personas:{secret}@")
    result = run_cli("validate", "--data", with_secret, env=pg_env, check=False)
    assert_one_paragraph(result, "holds a password", "personas:***@", password=secret)
    result = run_cli("train", "--data", url, "--publish", with_secret, env=pg_env, check=False)
    assert_one_paragraph(result, "publish holds a password", password=secret)


def test_train_stops_before_any_work(pg_demo, pg_env, tmp_path):
    _, url = pg_demo
    store = tmp_path / "mlflow.db"
    env = {**pg_env, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    result = run_cli("train", "--data", url.replace("sales", "nope"), env=env, check=False)
    assert_one_paragraph(result, "has no schema 'nope'")
    assert not store.exists()  # no MLflow run was opened


def test_the_password_may_come_from_a_pgpass_file(pg_server, pg_demo, tmp_path):
    _, url = pg_demo
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_server.port}:*:{pg_server.user}:{pg_server.password}\n")
    pgpass.chmod(0o600)
    result = run_cli("validate", "--data", url, env=clean_env(PGPASSFILE=str(pgpass)))
    assert "OK: 800 customers" in result.stdout


def test_bad_values_are_reported_naming_the_table(pg_server, pg_env, tmp_path):
    with pgserver.connect(pg_server, "shop") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS broken CASCADE")
        cur.execute("CREATE SCHEMA broken")
        cur.execute("CREATE TABLE broken.customers (customer_id text, plan text)")
        cur.execute("INSERT INTO broken.customers VALUES ('A', 'pro'), ('B', 'free')")
        cur.execute(
            "CREATE TABLE broken.invoices (customer_id text, paid_at timestamp, total text)"
        )
        cur.execute(
            "INSERT INTO broken.invoices VALUES ('A', '2026-01-02', '12.5'), "
            "('B', '2026-01-03', 'ten')"
        )
        conn.commit()
    config = write_config(
        tmp_path / "c.yaml",
        """\
        tables: {transactions: invoices}
        columns: {transactions: {timestamp: paid_at, amount: total}}
        """,
    )
    url = pg_server.url("shop", schema="broken")
    result = run_cli("validate", "--data", url, "--config", config, env=pg_env, check=False)
    assert_one_paragraph(result, "table broken.invoices: column 'amount' is not a number", "'ten'")


def test_tables_name_other_tables_in_postgres_and_in_a_folder(pg_server, pg_demo, pg_env, tmp_path):
    folder, _ = pg_demo
    pgserver.load_folder(pg_server, "shop", folder, "renamed", names={"transactions": "invoices"})
    config = write_config(tmp_path / "c.yaml", "tables: {transactions: invoices}\n")
    url = pg_server.url("shop", schema="renamed")
    result = run_cli("validate", "--data", url, "--config", config, env=pg_env)
    assert "OK: 800 customers" in result.stdout and "transactions" in result.stdout
    copy = tmp_path / "files"
    copy.mkdir()
    for f in folder.iterdir():
        target = "invoices.parquet" if f.name == "transactions.parquet" else f.name
        (copy / target).write_bytes(f.read_bytes())
    result = run_cli("validate", "--data", copy, "--config", config, env=pg_env)
    assert "transactions" in result.stdout
    missing = write_config(tmp_path / "m.yaml", "tables: {feedback: answers}\n")
    result = run_cli("validate", "--data", copy, "--config", missing, env=pg_env, check=False)
    assert_one_paragraph(result, "has no file answers.csv or answers.parquet")


# --------------------------------------------------------------------------- tracking


def test_inputs_are_logged_as_datasets_without_the_password(pg_demo, with_password, tmp_path):
    _, url = pg_demo
    store = tmp_path / "mlflow.db"
    cfg = load_config()
    cfg["tracking"]["uri"] = f"sqlite:///{store}"
    loaded = load_data(url)
    try:
        with tracking.run(cfg, run_name="lineage") as run_id:
            tracking.log_inputs(loaded)
    finally:
        loaded.con.close()
    inputs = MlflowClient(cfg["tracking"]["uri"]).get_run(run_id).inputs.dataset_inputs
    by_name = {i.dataset.name: i for i in inputs}
    assert set(by_name) == set(loaded.tables)
    transactions = by_name["transactions"]
    assert json.loads(transactions.dataset.source) == {
        "source": url,
        "table": "table sales.transactions",
    }
    assert transactions.dataset.digest == loaded.digests["transactions"]
    profile = json.loads(transactions.dataset.profile)
    assert profile["num_rows"] == loaded.quality["tables"]["transactions"]["rows"]
    schema = json.loads(transactions.dataset.schema)["mlflow_colspec"]
    assert {c["name"] for c in schema} >= {"customer_id", "timestamp", "amount"}
    assert {t.key: t.value for t in transactions.tags}["data_fingerprint"] == loaded.fingerprint
    assert with_password.encode() not in store.read_bytes()


TRACKING_SCRIPT = """
import sys
from pipelines import tracking
from pipelines.config import load_config
cfg = load_config()
cfg["tracking"]["uri"] = sys.argv[1]
with tracking.run(cfg, run_name=sys.argv[2]):
    tracking.log_params({"who": sys.argv[2]})
"""


def _concurrent_runs(uri: str, env: dict, n: int = 3) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRACKING_SCRIPT, uri, f"run{i}"],
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def test_several_first_runs_on_a_fresh_sqlite_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    results = _concurrent_runs(uri, dict(os.environ))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-2000:] for r in results]
    experiment = MlflowClient(uri).get_experiment_by_name("personas")
    runs = MlflowClient(uri).search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["run0", "run1", "run2"]


def test_a_team_store_on_postgres_takes_concurrent_first_runs(pg_server, pg_env):
    pgserver.create_database(pg_server, "mlflow_team")
    uri = pg_server.url("mlflow_team")
    results = _concurrent_runs(uri, pg_env)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr[-2000:] for r in results]
    os.environ["PGPASSWORD"] = pg_server.password
    try:
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("personas").experiment_id])
    finally:
        del os.environ["PGPASSWORD"]
    assert len(runs) == 3
    assert all(pg_server.password not in r.stdout + r.stderr for r in results)


# --------------------------------------------------------------------------- train


@pytest.fixture(scope="module")
def trained(pg_demo, pg_server, tmp_path_factory):
    """Train from the Parquet folder and from PostgreSQL at once, on one fresh SQLite store."""
    folder, url = pg_demo
    base = tmp_path_factory.mktemp("pg-train")
    store = base / "store" / "mlflow.db"
    env = clean_env(PGPASSWORD=pg_server.password, MLFLOW_TRACKING_URI=f"sqlite:///{store}")
    procs = {
        name: subprocess.Popen(
            [*PERSONAS, "train", "--data", str(data), "--output", str(base / name)],
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, data in (("files", folder), ("pg", url))
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=1800)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return base, store, results


@pytest.mark.slow
def test_two_trains_at_once_on_a_fresh_store_both_succeed(trained):
    _, _, results = trained
    for result in results.values():
        assert result.returncode == 0, result.stderr[-3000:]
        assert "MLflow run: " in result.stdout


@pytest.mark.slow
def test_train_from_postgres_gives_the_same_features_and_personas(trained):
    base, _, results = trained
    assert all(r.returncode == 0 for r in results.values())
    files = pd.read_parquet(base / "files" / "features.parquet")
    from_pg = pd.read_parquet(base / "pg" / "features.parquet")
    pd.testing.assert_frame_equal(files, from_pg)
    a = pd.read_csv(base / "files" / "assignments.csv", dtype={"customer_id": str})
    b = pd.read_csv(base / "pg" / "assignments.csv", dtype={"customer_id": str})
    assert list(a["customer_id"]) == list(b["customer_id"])
    assert adjusted_rand_score(a["persona_id"], b["persona_id"]) == 1.0
    quality = json.loads((base / "pg" / "data_quality.json").read_text())
    assert quality["tables"]["feedback"]["file"] == "table sales.feedback"
    assert quality["source"].startswith("postgresql://personas@127.0.0.1:")


@pytest.mark.slow
def test_the_password_is_nowhere(trained, pg_server):
    base, store, results = trained
    secret = pg_server.password
    for result in results.values():
        assert secret not in result.stdout + result.stderr
    assert secret.encode() not in store.read_bytes()
    for path in [*base.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_train_tracks_on_a_postgres_store(pg_demo, pg_server, tmp_path):
    _, url = pg_demo
    pgserver.create_database(pg_server, "mlflow_train")
    store = pg_server.url("mlflow_train")
    config = write_config(
        tmp_path / "c.yaml",
        f"tracking: {{uri: '{store}', artifact_location: '{tmp_path / 'artifacts'}'}}\n",
    )
    env = clean_env(PGPASSWORD=pg_server.password)
    out = tmp_path / "o"
    result = run_cli("train", "--data", url, "--config", config, "--output", out, env=env)
    run_id = result.stdout.rsplit("MLflow run: ", 1)[1].split()[0]
    os.environ["PGPASSWORD"] = pg_server.password
    try:
        client = MlflowClient(store)
        run = client.get_run(run_id)
        version = client.get_model_version_by_alias("personas", "champion")
    finally:
        del os.environ["PGPASSWORD"]
    assert run.info.status == "FINISHED"
    assert version.run_id == run_id
    assert (tmp_path / "artifacts").is_dir()
    dump = subprocess.run(
        [str(pg_server.bin / "pg_dump"), "-d", store],
        capture_output=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    assert b"persona_model" in dump and pg_server.password.encode() not in dump
    assert pg_server.password not in result.stdout + result.stderr


# --------------------------------------------------------------------------- publish


def _dump(server, schema: str) -> dict[str, list[tuple]]:
    """Every row of the publish tables, sorted (``published_at`` left out)."""
    queries = {
        "persona_runs": "SELECT run_id, kind, level, as_of, source, model_uri, n_customers, "
        "n_entered, n_moved, n_left FROM {s}.persona_runs",
        "personas": "SELECT run_id, persona_id, name, size, share, nps FROM {s}.personas",
        "persona_assignments": "SELECT * FROM {s}.persona_assignments",
        "persona_membership": "SELECT * FROM {s}.persona_membership",
    }
    out = {}
    with pgserver.connect(server, "crm") as conn, conn.cursor() as cur:
        for table, sql in queries.items():
            cur.execute(sql.format(s=schema))
            out[table] = sorted(cur.fetchall(), key=repr)
    return out


def _tables_exist(server, schema: str) -> bool:
    with pgserver.connect(server, "crm") as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"
        )
        return cur.fetchall()[0][0] > 0


@pytest.fixture(scope="module")
def crm(pg_server):
    pgserver.create_database(pg_server, "crm")
    return pg_server


def _assign(*rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "persona_id": [r[1] for r in rows],
            "persona_name": [f"P{r[1]}" for r in rows],
            "confidence": [0.5] * len(rows),
            "is_outlier": [False] * len(rows),
        }
    )


def _personas(assignments: pd.DataFrame) -> list[dict]:
    sizes = assignments["persona_id"].value_counts()
    return [
        {"persona_id": int(p), "name": f"P{p}", "size": int(n), "share": n / len(assignments),
         "nps": 12.5, "traits": [{"feature": "x", "effect": float("nan")}]}
        for p, n in sizes.items()
    ]  # fmt: skip


def _publish(crm, schema, run_id, assignments, as_of):
    return publish(
        crm.url("crm", schema=schema),
        run_id=run_id,
        personas=_personas(assignments),
        assignments=assignments,
        as_of=as_of,
        source="demo",
    )


def test_resegmentation_closes_and_opens_history_rows(crm, with_password):
    first = _assign(("c1", 1), ("c2", 1), ("c3", 2))
    result = _publish(crm, "reseg", "run-a", first, "2026-01-31")
    assert (result.published, result.n_entered, result.n_moved, result.n_left) == (True, 3, 0, 0)
    second = _assign(("c1", 1), ("c2", 2), ("c4", 3))  # c1 stays, c2 moves, c3 leaves, c4 new
    result = _publish(crm, "reseg", "run-b", second, "2026-02-28")
    assert (result.n_entered, result.n_moved, result.n_left) == (1, 1, 1)
    state = _dump(crm, "reseg")
    jan, feb = pd.Timestamp("2026-01-31").to_pydatetime(), pd.Timestamp("2026-02-28")
    feb = feb.to_pydatetime()
    history = {(r[0], r[1]): r for r in state["persona_membership"]}
    assert len(history) == 5
    assert history[("c1", 1)][3:] == (jan, None, "run-a", None)  # kept: still open
    assert history[("c2", 1)][3:] == (jan, feb, "run-a", "run-b")  # moved: closed ...
    assert history[("c2", 2)][3:] == (feb, None, "run-b", None)  # ... and a new one opened
    assert history[("c3", 2)][3:] == (jan, feb, "run-a", "run-b")  # left: closed
    assert history[("c4", 3)][3:] == (feb, None, "run-b", None)
    current = {r[0]: r for r in state["persona_assignments"]}
    assert sorted(current) == ["c1", "c2", "c4"]
    assert current["c1"][5] == jan and current["c2"][5] == feb  # since
    assert {r[6] for r in current.values()} == {"run-b"}
    assert [r[0] for r in state["persona_runs"]] == ["run-a", "run-b"]
    assert len(state["personas"]) == 2 + 3


def test_publishing_a_run_again_changes_nothing(crm, with_password):
    assignments = _assign(("c1", 1), ("c2", 2))
    _publish(crm, "again", "run-1", assignments, "2026-03-31")
    before = _dump(crm, "again")
    result = _publish(crm, "again", "run-1", assignments, "2026-03-31")
    assert result.published is False
    assert _dump(crm, "again") == before


def test_an_older_run_is_refused(crm, with_password):
    _publish(crm, "ordered", "new", _assign(("c1", 1)), "2026-03-31")
    before = _dump(crm, "ordered")
    with pytest.raises(DataError, match="is older than run new"):
        _publish(crm, "ordered", "old", _assign(("c1", 2)), "2026-01-31")
    assert _dump(crm, "ordered") == before


def test_a_failure_inside_the_transaction_publishes_nothing(crm, with_password, monkeypatch):
    apply = publish_mod._apply

    def apply_then_fail(*args):
        apply(*args)
        raise RuntimeError("boom after the writes")

    monkeypatch.setattr(publish_mod, "_apply", apply_then_fail)
    with pytest.raises(RuntimeError, match="boom"):
        _publish(crm, "failing", "first", _assign(("c1", 1)), "2026-01-31")
    assert not _tables_exist(crm, "failing")  # even the tables' creation was undone
    monkeypatch.setattr(publish_mod, "_apply", apply)
    _publish(crm, "failing", "first", _assign(("c1", 1)), "2026-01-31")
    before = _dump(crm, "failing")
    monkeypatch.setattr(publish_mod, "_apply", apply_then_fail)
    with pytest.raises(RuntimeError, match="boom"):
        _publish(crm, "failing", "second", _assign(("c1", 2), ("c2", 1)), "2026-02-28")
    assert _dump(crm, "failing") == before


KILLED_SCRIPT = """
import sys, time
import pandas as pd
from pipelines import publish as mod
apply = mod._apply
def apply_then_wait(*args):
    apply(*args)
    print("written, not committed", flush=True)
    time.sleep(600)
mod._apply = apply_then_wait
frame = pd.DataFrame({"customer_id": ["c1", "c2"], "persona_id": [2, 2],
                      "persona_name": ["P2", "P2"]})
mod.publish(sys.argv[1], run_id="killed", as_of="2026-02-28", assignments=frame,
            personas=[{"persona_id": 2, "name": "P2", "size": 2, "share": 1.0}])
"""


def test_a_run_killed_mid_publish_leaves_the_previous_state(crm, pg_env, with_password):
    _publish(crm, "killed", "before", _assign(("c1", 1)), "2026-01-31")
    before = _dump(crm, "killed")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT, crm.url("crm", schema="killed")],
        env={**pg_env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "written, not committed", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _dump(crm, "killed") != before:
        time.sleep(0.5)  # the server notices the dropped connection and rolls back
    assert _dump(crm, "killed") == before
    result = _publish(crm, "killed", "after", _assign(("c1", 3)), "2026-02-28")
    assert result.n_moved == 1  # the lock was released with the killed connection


def test_score_runs_publish_under_a_stable_id(crm, with_password, tmp_path):
    csv = tmp_path / "scored.csv"
    _assign(("007", 1), ("c2", 2)).to_csv(csv, index=False)
    cfg = {"publish": crm.url("crm", schema="scored"), "level": "customer"}
    kwargs = {"output": csv, "model_uri": "models:/personas/3", "as_of": "2026-04-30",
              "fingerprint": "abc"}  # fmt: skip
    result = publish_scores(cfg, **kwargs)
    assert result.run_id == score_run_id("models:/personas/3", "abc", "2026-04-30")
    assert publish_scores(cfg, **kwargs).published is False
    state = _dump(crm, "scored")
    assert [r[1] for r in state["persona_runs"]] == ["score"]
    assert sorted(r[0] for r in state["persona_assignments"]) == ["007", "c2"]
    assert publish_scores({"publish": None}, **kwargs) is None


@pytest.mark.slow
def test_a_train_run_publishes_what_it_wrote(trained, crm, with_password):
    base, _, results = trained
    run_id = results["pg"].stdout.rsplit("MLflow run: ", 1)[1].split()[0]
    cfg = load_config(publish=crm.url("crm", schema="personas_pub"))
    result = publish_outputs(cfg, output=base / "pg", run_id=run_id, model_uri="models:/p/1")
    written = pd.read_csv(base / "pg" / "assignments.csv", dtype={"customer_id": str})
    personas = json.loads((base / "pg" / "personas.json").read_text())
    assert (result.published, result.n_customers, result.n_entered) == (
        True,
        len(written),
        len(written),
    )
    state = _dump(crm, "personas_pub")
    assert sorted(r[0] for r in state["persona_assignments"]) == sorted(written["customer_id"])
    assert len(state["personas"]) == len(personas)
    assert all(r[4] is None for r in state["persona_membership"])  # all open
    assert state["persona_runs"][0][4].startswith("postgresql://personas@")
    assert publish_outputs(cfg, output=base / "pg", run_id=run_id).published is False


def test_a_publish_url_with_a_password_is_refused():
    with pytest.raises(ConfigError, match="publish holds a password"):
        load_config(publish="postgresql://u:secret@db/crm")

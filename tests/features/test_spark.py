"""The Spark engine: DuckDB's features, DuckDB's personas, every customer assigned on Spark.

The Spark tests share one session on a real cluster, Spark's ``local-cluster[2,1,1024]``
master (two executor JVMs apart from the driver; UI off, 4 shuffle partitions), whose
``spark.driver.maxResultSize`` is too small for the demo's whole feature table: a run
that collected every customer to the driver would fail. They are skipped, with the
reason, only where PySpark or Java is missing; ``make test`` installs PySpark (and Java,
as root). The settings and error tests run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SUBSCRIBERS_AS_OF, monthly_and_annual_subscribers, records, write_csv_tables
from sklearn.metrics import adjusted_rand_score

from features import DataError, build_features, load_data
from features.engine import Engine
from features.rfm import clv_summary
from models import BetaGeoModel, GammaGammaModel
from pipelines import engines
from pipelines.config import ENGINES, ConfigError, load_config

AS_OF = "2026-03-31 00:00"
DEMO_CUSTOMERS = 1500
ROOT = Path(__file__).resolve().parents[2]

#: A real cluster: two executor JVMs (one core, 1 GiB each), apart from the driver's.
MASTER = "local-cluster[2,1,1024]"
#: What the driver may receive from one Spark job. The demo's samples and aggregates fit;
#: its whole feature table does not (`test_collecting_every_customer_fails`).
MAX_RESULT_SIZE = "400k"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    pytest.importorskip(
        "pyspark", reason="PySpark is not installed (pip install '.[spark]'; make test does)"
    )
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Java is not installed (Spark needs Java 17+: apt-get install default-jre)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from features.spark import pandas_warnings_silenced

    builder = (
        SparkSession.builder.master(MASTER)
        .appName("personas-tests")
        .config("spark.driver.maxResultSize", MAX_RESULT_SIZE)
        .config("spark.executorEnv.PYTHONPATH", str(ROOT))  # the executors import this tree
        .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
    )
    with pandas_warnings_silenced():
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def fast_config(tmp_path, engine: str) -> dict:
    """The default config with fewer resamples, tracked in a temporary store."""
    cfg = load_config(engine=engine)
    cfg["model"]["stability_resamples"] = 5
    cfg["drivers"]["n_repeats"] = 2
    cfg["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg["spark"]["bucket_size"] = 500  # three executor tasks build the demo's features
    return cfg


def assert_same_features(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Equal tables: same customers, columns, categories and numbers (to float tolerance)."""
    assert list(spark.columns) == list(duck.columns)
    assert spark.index.equals(duck.index)
    for column in duck.columns:
        a, b = duck[column], spark[column]
        if pd.api.types.is_numeric_dtype(a):
            assert pd.api.types.is_numeric_dtype(b), column
            np.testing.assert_allclose(
                b.to_numpy(float), a.to_numpy(float), rtol=1e-9, atol=1e-9, err_msg=column
            )
        else:  # missing is missing, whichever dtype the writer gave the column
            a, b = (x.astype(object).where(x.notna(), None) for x in (a, b))
            assert b.equals(a), column


# -- settings and errors (no Spark needed) ---------------------------------------------


def test_engine_is_duckdb_by_default_and_validated(tmp_path) -> None:
    assert load_config()["engine"] == "duckdb"
    assert load_config(engine="spark")["engine"] == "spark"
    with pytest.raises(ConfigError, match="engine should be one of duckdb, spark; got 'flink'"):
        load_config(engine="flink")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark:\n  conf: [spark.driver.memory]\n")
    with pytest.raises(ConfigError, match="spark.conf should map Spark setting names"):
        load_config(bad)
    free = tmp_path / "free.yaml"
    free.write_text("spark:\n  conf: {spark.driver.memory: 8g}\n")
    assert load_config(free)["spark"]["conf"] == {"spark.driver.memory": "8g"}
    assert load_config()["spark"]["sample_size"] == 50000
    for setting in ("sample_size: 0", "bucket_size: 1.5", "single_file_rows: many"):
        bad.write_text(f"spark:\n  {setting}\n")
        key = setting.split(":")[0]
        with pytest.raises(ConfigError, match=f"spark.{key} should be a whole number >= 1"):
            load_config(bad)
    bad.write_text("spark:\n  assignments_table: ''\n")
    with pytest.raises(ConfigError, match="spark.assignments_table should be a metastore table"):
        load_config(bad)


def test_metastore_sources_need_the_spark_engine_and_valid_names(tmp_path) -> None:
    with (
        pytest.raises(ConfigError, match="only the Spark engine reads") as caught,
        engines.data_source("spark:sales", load_config()),
    ):
        pass
    assert "\n" not in str(caught.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("spark:\n  tables: {invoices: sales.invoices}\n")
    with pytest.raises(ConfigError, match="spark.tables should map contract tables"):
        load_config(bad)
    with pytest.raises(DataError, match="read by `personas train --engine spark` only"):
        load_data("spark:sales")


def test_cli_engine_choices_are_the_configs() -> None:
    from pipelines.cli import EngineChoice

    assert tuple(e.value for e in EngineChoice) == ENGINES


def test_missing_pyspark_is_one_clear_paragraph(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        engines.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyspark" else real(name, *a),
    )
    engines.require(load_config())  # duckdb needs nothing
    with pytest.raises(ConfigError, match=r'pip install "personas\[spark\]"') as caught:
        engines.require(load_config(engine="spark"))
    assert "\n" not in str(caught.value)


def test_a_sampled_run_reads_only_its_customers_of_the_champion(tmp_path) -> None:
    from pipelines.compare import load_previous

    personas = [{"persona_id": 0, "name": "A"}]
    ids = [f"C{i:03d}" for i in range(300)]
    units = pd.DataFrame(
        {"customer_id": ids, "persona_id": 0, "persona_name": "A", "confidence": 0.5,
         "is_outlier": False}
    )  # fmt: skip
    features = pd.DataFrame({"customer_id": ids, "usage_events": np.arange(300.0)})
    single, datasets = tmp_path / "single", tmp_path / "datasets"
    for folder in (single, datasets / "assignments", datasets / "features"):
        folder.mkdir(parents=True)
    for folder in (single, datasets):
        (folder / "personas.json").write_text(json.dumps(personas))
    units.to_csv(single / "assignments.csv", index=False)
    features.to_parquet(single / "features.parquet", index=False)
    for part in range(3):  # as the executors write them
        rows = slice(100 * part, 100 * (part + 1))
        units[rows].to_parquet(datasets / "assignments" / f"part-{part}.parquet")
        features[rows].to_parquet(datasets / "features" / f"part-{part}.parquet")
    sample = pd.Series(["C007", "C150", "C299", "X"])
    for folder in (single, datasets):
        previous = load_previous("run", folder, sample)
        assert sorted(previous.assignments["customer_id"]) == ["C007", "C150", "C299"]
        assert previous.features["usage_events"].to_dict() == {
            "C007": 7.0, "C150": 150.0, "C299": 299.0
        }  # fmt: skip
        assert not previous.assignments["is_outlier"].any()
    assert len(load_previous("run", single).assignments) == 300  # the DuckDB path: whole


# -- the same features -----------------------------------------------------------------


def edge_tables() -> dict[str, list[dict]]:
    """Hand-made tables with what tells the engines apart, if anything does."""
    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(1, 7)],
            "signup_date": [f"2025-0{i}-15" for i in range(1, 7)],
            "company size": [10, 20, 30, 40, 50, 600],
            "plan type": ["Pro", "Team", "Pro", "Team", "Pro", "Team"],
        }
    )
    return {
        "customers": customers,
        "transactions": records(
            "customer_id timestamp amount discount days_late",
            ("C1", "2025-06-01 10:00", "100", "10", "0"),
            ("C1", "2025-06-01 18:00", "50", "0", "3"),  # same day: one purchase day
            ("C1", "2026-01-02", "100", "", "1"),
            ("C1", "2026-02-02", "-20", "", ""),  # a refund
            ("C2", "2026-03-30 23:59:59.5", "0", "0", "0"),  # a free order, to the half second
            ("C3", "2025-12-01", "100", "5", "2"),
            ("C3", "2026-03-01", "100", "5", "2"),  # ties with C1 in frequency
            ("C5", "2026-03-31 00:00", "70", "0", "0"),  # exactly at as_of: counted
        ),
        "usage_events": records(
            "customer_id timestamp feature quantity",
            ("C1", "2026-03-30", "Reports", "2"),
            ("C1", "2026-02-15", "reports", "1"),  # slugs alike: one feature
            ("C2", "2026-01-10", "API", ""),
            ("C3", "2026-03-29 12:00", "API", "3"),
            ("C5", "2026-03-31 01:00", "API", "1"),  # after as_of: ignored
        ),
        "engagement_events": records(
            "customer_id timestamp channel",
            ("C1", "2026-03-01", "Email"),
            ("C1", "2026-03-02", "email"),
            ("C2", "2026-03-03", "Web visit"),
            ("C6", "2025-06-01", "Email"),  # silent in the window
        ),
        "feedback": records(
            "customer_id timestamp nps csat comment",
            ("C1", "2026-01-01", "9", "5", "great"),
            ("C1", "2026-03-01", "6", "3", ""),
            ("C1", "2026-03-02", "", "4", ""),  # thirds: 1 of 3 responses has a comment
            ("C2", "2026-03-01", "10", "", ""),
            ("C3", "2026-03-01", "7", "4", "ok"),
        ),
        "support_tickets": records(
            "customer_id opened_at closed_at priority",
            ("C1", "2026-03-01", "2026-03-02 12:00", "High"),
            ("C1", "2026-03-05", "", "low"),
            ("C1", "2026-03-06", "2026-04-10", "low"),  # closed after as_of: still open
            ("C3", "2026-02-01", "2026-02-04", "urgent"),
        ),
    }


def test_features_equal_duckdb_on_edge_cases(spark, tmp_path) -> None:
    cfg = load_config()
    params = {**cfg["features"], "seed": cfg["seed"]}
    loaded = load_data(write_csv_tables(tmp_path / "edge", edge_tables()), as_of=AS_OF)
    try:
        duck = build_features(loaded, params)
        with engines.feature_engine(loaded, {**cfg, "engine": "spark"}) as engine:
            table = build_features(loaded, params, engine=engine)
            spark_clv = clv_summary(engine, loaded.as_of)
        duck_clv = clv_summary(Engine(loaded), loaded.as_of)
    finally:
        loaded.con.close()
    assert {"attr_company_size", "attr_plan_type", "feedback_comments"} <= set(duck.frame)
    assert duck.frame.loc["C1", "feedback_comments"] == pytest.approx(1 / 3, rel=1e-12)
    assert_same_features(duck.frame, table.frame)
    assert_same_features(duck_clv.set_index("customer_id"), spark_clv.set_index("customer_id"))
    assert spark.catalog.listTables() == []  # the views went with the engine


def test_subscriptions_are_fitted_on_every_customer_from_cluster_medians_and_counts(
    spark, tmp_path
) -> None:
    """A monthly base with annual subscribers: two billing cycles, each with its model,
    fitted on the cluster while the views hold a sample of 60 customers."""
    from features.spark import SparkEngine
    from pipelines import value
    from pipelines.cluster import draw_sample

    tables, _ = monthly_and_annual_subscribers()
    loaded = load_data(write_csv_tables(tmp_path / "data", tables), as_of=SUBSCRIBERS_AS_OF)
    cfg = load_config(as_of=SUBSCRIBERS_AS_OF)
    try:
        whole = value._fit(Engine(loaded), loaded.as_of, cfg)
        with SparkEngine.stage(loaded, spark, buckets=2) as engine:
            engine.restrict(draw_sample(engine, 60, 0))
            fitted = value._fit(engine, loaded.as_of, cfg)
    finally:
        loaded.con.close()
    assert len(fitted["value"]) == 60  # the sample's values; the fit is everyone's
    assert fitted["params"] == whole["params"]  # the same cycles and sBG fits, to the bit
    assert [round(c["cycle_days"] / 30) for c in fitted["params"]["cycles"]] == [1, 12]
    assert fitted["params"]["customers_fitted"] == len(tables["customers"])


def skewed_groups(seed: int = 0) -> tuple[list[tuple], dict]:
    """Rows ``(g, x, y)``: lognormal ``x`` rounded (ties), few-valued ``y``, NULLs, NaNs.

    Group 0 is large (even count of ``x`` values), 1 odd, 2 even, 3 one value, 4 only
    missing values of ``x``. Returns the rows and each group's values of each column.
    """
    rng = np.random.default_rng(seed)
    sizes, rows = {0: 6000, 1: 7, 2: 8, 3: 1, 4: 3}, []
    for g, n in sizes.items():
        x = np.round(rng.lognormal(2.0, 1.5, n), 1)
        y = rng.integers(0, 4, n).astype(float)
        lost = rng.random(n)
        for i in range(n):
            xi = None if lost[i] < 0.05 else float("nan") if lost[i] < 0.1 else float(x[i])
            rows.append((g, None if g == 4 else xi, float(y[i])))
    if sum(1 for g, x, _ in rows if g == 0 and x is not None and x == x) % 2:
        rows.append((0, 1e6, 0.0))  # an even count of x in the large group, an extreme value
    values = {
        (g, c): np.array([r[i] for r in rows if r[0] == g], dtype=float)
        for g in sizes
        for i, c in ((1, "x"), (2, "y"))
    }
    return rows, values


@pytest.mark.parametrize("bracket", ["default", "coarse", "missed"])
def test_exact_medians_equal_numpys_without_holding_the_values(spark, monkeypatch, bracket):
    """Two passes per group and over everyone: a percentile_approx bracket, then counts and
    the few values inside it. Coarse brackets (accuracy 20) and brackets that miss the
    median (widened to the minimum and maximum) give numpy's median to the bit."""
    from pyspark.sql import functions as sf

    from pipelines import cluster_quantiles
    from pipelines.cluster_profile import _num

    if bracket == "coarse":
        monkeypatch.setattr(cluster_quantiles, "ACCURACY", 20)
        monkeypatch.setattr(cluster_quantiles, "MARGIN", 3 / 20)
    elif bracket == "missed":  # far below every median: the bracket misses, is widened
        monkeypatch.setattr(
            cluster_quantiles, "_bracket", lambda x, qs: sf.percentile_approx(x, [0.0, 0.01])
        )
    rows, values = skewed_groups()
    frame = spark.createDataFrame(rows, "g long, x double, y double")
    found = cluster_quantiles.medians_by(frame, "g", {c: _num(c) for c in ("x", "y")})
    for c in ("x", "y"):
        everyone = np.concatenate([v for (_, name), v in values.items() if name == c])
        expected = {None: everyone, **{g: v for (g, name), v in values.items() if name == c}}
        for g, v in expected.items():
            kept = v[~np.isnan(v)]
            median = float(np.median(kept)) if len(kept) else None
            assert found[(g, c)] == median, (g, c, bracket)
    assert found[(3, "x")] == values[(3, "x")][0]  # one value
    assert found[(4, "x")] is None  # no value


@pytest.mark.parametrize("accuracy", [10_000, 20])
def test_exact_order_statistics_of_whole_columns(spark, monkeypatch, accuracy) -> None:
    """The champion's decile edges: values at given ranks, as numpy sorts them."""
    from pipelines import cluster_quantiles
    from pipelines.cluster_profile import _num

    monkeypatch.setattr(cluster_quantiles, "ACCURACY", accuracy)
    monkeypatch.setattr(cluster_quantiles, "MARGIN", 3 / accuracy)
    rows, _ = skewed_groups(1)
    frame = spark.createDataFrame(rows, "g long, x double, y double")
    columns = {c: np.sort([r[i] for r in rows if r[i] is not None and r[i] == r[i]])
               for i, c in ((1, "x"), (2, "y"))}  # fmt: skip
    n = {c: len(v) for c, v in columns.items()}
    ranks = {c: [0, 1, n[c] // 3, n[c] // 3 + 1, n[c] // 2, n[c] - 1] for c in columns}
    found = cluster_quantiles.order_statistics(frame, {c: _num(c) for c in columns}, ranks, n)
    assert found == {c: {r: float(columns[c][r]) for r in ranks[c]} for c in columns}


# -- the same personas, assigned on the cluster ----------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from pipelines.demo import write_demo

    folder = tmp_path_factory.mktemp("spark-demo") / "data"
    write_demo(folder, n_customers=DEMO_CUSTOMERS, seed=3, file_format="parquet")
    return folder


@pytest.fixture(scope="module")
def trained(spark, demo, tmp_path_factory):
    """One train run per engine on the demo, into one MLflow store."""
    from pipelines.train import train

    root = tmp_path_factory.mktemp("spark-train")
    runs = {}
    for engine in ENGINES:
        cfg = fast_config(root, engine)
        runs[engine] = train(demo, cfg=cfg, output=root / engine), cfg
    return runs


def read_features(path) -> pd.DataFrame:
    """A written feature table (a file or a dataset), indexed and sorted by customer."""
    frame = pd.read_parquet(path)
    return (
        frame.assign(customer_id=frame["customer_id"].astype(str))
        .set_index("customer_id")
        .sort_index()
    )


def read_assignments(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"customer_id": str})


def test_features_equal_duckdb_on_the_demo(trained) -> None:
    (duck, _), (spark_run, _) = trained["duckdb"], trained["spark"]
    a = read_features(duck.output / "features.parquet")
    b = read_features(spark_run.output / "features.parquet")  # one executor merged the buckets
    assert len(a) == DEMO_CUSTOMERS and a.shape[1] > 30
    clv = [c for c in a if c.startswith("clv_")]  # fitted on the summaries: a looser match
    assert clv
    assert_same_features(a.drop(columns=clv), b.drop(columns=clv))
    np.testing.assert_allclose(b[clv].to_numpy(float), a[clv].to_numpy(float), rtol=1e-6)
    dataset = read_features(spark_run.output / "features")  # the executors' Parquet dataset
    assert_same_features(b, dataset)
    assert len(list((spark_run.output / "features").glob("*.parquet"))) == 3  # three buckets


def test_spark_train_finds_duckdbs_personas(trained) -> None:
    (duck, _), (spark_run, _) = trained["duckdb"], trained["spark"]
    a = read_assignments(duck.output / "assignments.csv")
    b = read_assignments(spark_run.output / "assignments.csv")
    assert len(b) == DEMO_CUSTOMERS and b["customer_id"].is_unique
    merged = a.merge(b, on="customer_id", suffixes=("_duckdb", "_spark"), validate="1:1")
    assert len(merged) == DEMO_CUSTOMERS
    assert adjusted_rand_score(merged["persona_id_duckdb"], merged["persona_id_spark"]) == 1.0
    assert (merged["persona_id_duckdb"] == merged["persona_id_spark"]).all()
    assert (merged["persona_name_duckdb"] == merged["persona_name_spark"]).all()
    assert (merged["is_outlier_duckdb"] == merged["is_outlier_spark"]).all()
    np.testing.assert_allclose(merged["confidence_spark"], merged["confidence_duckdb"], atol=1e-4)
    dataset = pd.read_parquet(spark_run.output / "assignments")
    assert sorted(dataset["customer_id"]) == sorted(b["customer_id"])


def test_spark_personas_equal_duckdbs_counted_on_the_cluster(trained) -> None:
    (duck, _), (spark_run, _) = trained["duckdb"], trained["spark"]
    a = json.loads((duck.output / "personas.json").read_text())
    b = json.loads((spark_run.output / "personas.json").read_text())
    assert [p["persona_id"] for p in a] == [p["persona_id"] for p in b]
    exact = "size share respondents promoters passives detractors nps nps_ci_low nps_ci_high"
    for x, y in zip(a, b, strict=True):
        assert {k: y[k] for k in exact.split()} == {k: x[k] for k in exact.split()}
        assert y["name"] == x["name"]
        for key in ("nps_vs_rest", "nps_p_value", "nps_rank", "is_focus", "is_at_risk"):
            assert y[key] == x[key], key
        for key in ("revenue_share", "clv_share", "value_index", "revenue_mean", "p_alive_mean"):
            assert y[key] == pytest.approx(x[key], abs=2e-3), key  # CLV: to 1e-6, then rounded
        assert y["revenue_at_risk"] == pytest.approx(x["revenue_at_risk"], rel=1e-5)
        for s, t in zip(x["traits"], y["traits"], strict=True):
            assert t["feature"] == s["feature"]
            for key in ("persona_value", "population_value", "std_diff"):
                assert t[key] == pytest.approx(s[key], abs=1e-3), (t["feature"], key)


def migration_of(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """The single-machine path's migration matrix, from two runs' written assignments."""
    both = before.merge(after, on="customer_id", suffixes=("_before", "_after"))
    counts = both.groupby(["persona_id_before", "persona_id_after"]).size()
    return (
        counts.rename("customers")
        .reset_index()
        .set_axis(["from_persona", "to_persona", "customers"], axis=1)
    )


def drift_of(before: pd.DataFrame, after: pd.DataFrame, changes: dict) -> dict:
    """The single-machine path's drift (rounded as changes.json) of the features listed."""
    from models.matching import population_stability

    return {c: round(population_stability(before[c], after[c]), 4) for c in changes["drift"]}


def test_migration_and_drift_are_counted_over_every_customer(trained) -> None:
    """The Spark run was compared with the DuckDB run (the champion) on the cluster."""
    (duck, _), (spark_run, _) = trained["duckdb"], trained["spark"]
    changes = json.loads((spark_run.output / "changes.json").read_text())
    assert changes["previous_run"] == duck.run_id
    assert changes["customers_compared"] == DEMO_CUSTOMERS
    migration = pd.read_csv(spark_run.output / "migration.csv")
    a = read_assignments(duck.output / "assignments.csv")
    b = read_assignments(spark_run.output / "assignments.csv")
    assert migration.equals(migration_of(a, b))  # exact counts, as DuckDB's path counts them
    assert changes["match_quality"] == 1.0  # every customer stayed: the same personas
    a, b = (read_features(r.output / "features.parquet") for r in (duck, spark_run))
    assert len(changes["drift"]) > 20
    assert changes["drift"] == drift_of(a, b, changes)


def test_collecting_every_customer_fails(spark, trained) -> None:
    """The run above passed with a driver that cannot take every customer's features."""
    from features.spark import pandas_warnings_silenced

    result, _ = trained["spark"]
    features = spark.read.parquet(str(result.output / "features"))
    assert features.count() == DEMO_CUSTOMERS
    with pandas_warnings_silenced():
        with pytest.raises(Exception, match="maxResultSize"):
            features.toPandas()
        assert len(features.limit(300).toPandas()) == 300  # a sample passes


def test_a_base_beyond_the_sample_is_fitted_on_a_sample_and_counted_whole(
    spark, trained, demo, tmp_path, monkeypatch
) -> None:
    from mlflow.tracking import MlflowClient

    from features.privacy import pseudonymize
    from features.spark import pandas_warnings_silenced
    from pipelines.train import train

    monkeypatch.setenv("PERSONAS_ID_SALT", "test-salt")
    cfg = fast_config(tmp_path, "spark")
    cfg["spark"]["sample_size"] = 700  # of 1,500 customers
    cfg["spark"]["single_file_rows"] = 1000  # too many for single files
    cfg["spark"]["assignments_table"] = "default.personas_sampled"
    cfg["privacy"]["pseudonymize_ids"] = True  # the executors hash the ids they write
    cfg["tracking"]["model_name"] = "personas_sampled"
    cfg["clv"]["model"] = "bgnbd"  # fitted on every customer's grouped purchase histories
    publishing = {**cfg, "publish": "postgresql://analyst@db.example.com/shop"}
    with pytest.raises(ConfigError, match="does not write") as caught:  # no assignments.csv
        train(demo, cfg=publishing, output=tmp_path / "published")
    assert "\n" not in str(caught.value) and not (tmp_path / "published").exists()
    result = train(demo, cfg=cfg, output=tmp_path / "out")
    assert len(result.assignments) == 700  # what the driver fitted on
    client = MlflowClient(tracking_uri=cfg["tracking"]["uri"])
    assert client.get_run(result.run_id).data.metrics["spark.assignment_agreement"] == 1.0
    assert not (result.output / "assignments.csv").exists()
    assert not (result.output / "features.parquet").exists()
    placed = pd.read_parquet(result.output / "assignments")
    assert len(placed) == DEMO_CUSTOMERS and placed["customer_id"].is_unique
    with pandas_warnings_silenced():
        table = spark.table("default.personas_sampled").toPandas()
    spark.sql("DROP TABLE default.personas_sampled")
    assert sorted(table["customer_id"]) == sorted(placed["customer_id"])
    features = read_features(result.output / "features")
    assert sorted(features.index) == sorted(placed["customer_id"])
    duck, _ = trained["duckdb"]
    a = read_assignments(duck.output / "assignments.csv")
    a["customer_id"] = pseudonymize(a["customer_id"], "test-salt")
    merged = a.merge(placed, on="customer_id", validate="1:1")
    assert len(merged) == DEMO_CUSTOMERS  # every id hashed, as the DuckDB path hashes them
    assert adjusted_rand_score(merged["persona_id_x"], merged["persona_id_y"]) >= 0.9
    personas = json.loads((result.output / "personas.json").read_text())
    sizes = placed["persona_id"].value_counts()
    assert {p["persona_id"]: p["size"] for p in personas} == sizes.to_dict()
    whole = json.loads((duck.output / "personas.json").read_text())  # every respondent counted
    for key in ("respondents", "promoters", "passives", "detractors"):
        assert sum(p[key] for p in personas) == sum(p[key] for p in whole), key
    loaded = load_data(demo)
    try:  # the single-machine fit on every customer's history
        summary = clv_summary(Engine(loaded), loaded.as_of)
    finally:
        loaded.con.close()
    fits = BetaGeoModel().fit(summary).params_ | GammaGammaModel().fit(summary).params_
    clv = json.loads((result.output / "clv_model.json").read_text())
    assert clv["customers_fitted"] == len(summary) > 700
    for name, value in fits.items():
        assert clv[name] == pytest.approx(value, rel=1e-6), name
    again = train(demo, cfg=cfg, output=tmp_path / "again")  # compared with the run above
    changes = json.loads((again.output / "changes.json").read_text())
    assert changes["previous_run"] == result.run_id  # read from its Parquet datasets
    assert changes["customers_compared"] == DEMO_CUSTOMERS  # every customer, on the cluster
    migration = pd.read_csv(again.output / "migration.csv")
    after = pd.read_parquet(again.output / "assignments")
    assert migration.equals(migration_of(placed, after))
    a, b = read_features(result.output / "features"), read_features(again.output / "features")
    assert changes["drift"] == drift_of(a, b, changes) and len(changes["drift"]) > 20
    assert sum(p["size_after"] or 0 for p in changes["personas"]) == DEMO_CUSTOMERS
    assert sum(p["size_before"] or 0 for p in changes["personas"]) == DEMO_CUSTOMERS
    assert not changes["appeared"] and not changes["vanished"]  # the same data and seed


def test_spark_udf_assignments_equal_the_driver(trained) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines import serving

    result, cfg = trained["spark"]
    metrics = MlflowClient(tracking_uri=cfg["tracking"]["uri"]).get_run(result.run_id).data.metrics
    assert metrics["spark.assignment_agreement"] == 1.0
    assert result.model_uri.startswith("models:/personas/")  # registered after the run
    written = read_assignments(result.output / "assignments.csv")
    features = read_features(result.output / "features.parquet")
    driver = serving.load_served_model(result.model_uri, cfg).predict(features).reset_index()
    merged = written.merge(driver, on="customer_id", suffixes=("", "_driver"), validate="1:1")
    assert len(merged) == DEMO_CUSTOMERS
    assert (merged["persona_id"] == merged["persona_id_driver"]).all()
    assert (merged["persona_name"] == merged["persona_name_driver"]).all()
    np.testing.assert_allclose(merged["confidence"], merged["confidence_driver"], atol=1e-4)


def test_score_on_the_cluster_places_customers_as_training_did(trained, demo, tmp_path) -> None:
    from pipelines.score import score

    result, cfg = trained["duckdb"]
    config = tmp_path / "score.yaml"
    config.write_text(f"tracking: {{uri: '{cfg['tracking']['uri']}'}}\n")
    out = tmp_path / "scored.csv"
    counts = score(demo, model=result.model_uri, output=out, config=config, engine="spark")
    scored = pd.read_csv(out, dtype={"customer_id": str})  # one executor wrote it
    merged = scored.merge(result.assignments, on="customer_id", validate="1:1")
    assert len(merged) == len(scored) == DEMO_CUSTOMERS
    assert (merged["persona_id_x"] == merged["persona_id_y"]).all()
    expected = result.assignments["persona_id"].value_counts().sort_index()
    assert counts.set_index("persona_id")["customers"].to_dict() == expected.to_dict()


def test_score_on_the_cluster_writes_a_parquet_folder_or_a_metastore_table(
    spark, trained, demo, metastore_db, tmp_path
) -> None:
    from typer.testing import CliRunner

    from features.spark import pandas_warnings_silenced
    from pipelines.cli import app
    from pipelines.score import score

    result, cfg = trained["duckdb"]
    tracked = f"tracking: {{uri: '{cfg['tracking']['uri']}'}}\n"
    config = tmp_path / "metastore.yaml"
    config.write_text(
        tracked + "spark: {tables: {transactions: invoices}}\n"
        "columns: {transactions: {amount: invoice_amount}}\n"
    )
    table = "default.personas_scored"  # beside the source's database, not in it
    score(f"spark:{metastore_db}", model=result.model_uri, output=f"spark:{table}",
          config=config, engine="spark")  # fmt: skip
    folder, config = tmp_path / "scored", tmp_path / "folder.yaml"
    config.write_text(tracked)
    cli = CliRunner().invoke(  # the command line, in this process's Spark session
        app,
        ["score", "--data", str(demo), "--model", result.model_uri, "--output", str(folder),
         "--config", str(config), "--engine", "spark"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert f"Scored {DEMO_CUSTOMERS:,} customers -> {folder}" in " ".join(cli.output.split())
    with pandas_warnings_silenced():
        placed = spark.table(table).toPandas()
    spark.sql(f"DROP TABLE {table}")
    for scored in (placed, pd.read_parquet(folder)):
        merged = scored.merge(result.assignments, on="customer_id", validate="1:1")
        assert len(merged) == len(scored) == DEMO_CUSTOMERS
        assert (merged["persona_id_x"] == merged["persona_id_y"]).all()


def test_one_csv_beyond_single_file_rows_is_refused_before_any_work(trained, demo, tmp_path):
    from pipelines.score import score

    result, cfg = trained["duckdb"]
    config = tmp_path / "score.yaml"
    config.write_text(
        f"tracking: {{uri: '{cfg['tracking']['uri']}'}}\nspark: {{single_file_rows: 1000}}\n"
    )
    out = tmp_path / "scored.csv"
    with pytest.raises(ConfigError, match="more than spark.single_file_rows") as caught:
        score(demo, model=result.model_uri, output=out, config=config, engine="spark")
    assert "\n" not in str(caught.value) and not out.exists()


# -- personas of accounts: the accounts' table built on the cluster --------------------

B2B_ACCOUNTS = 150


@pytest.fixture(scope="module")
def b2b_trained(spark, tmp_path_factory):
    """One train run per engine on the B2B demo at ``level: account`` (every account in
    the Spark run's sample, so that both fit on the same table)."""
    from pipelines.demo.accounts import write_b2b_demo
    from pipelines.train import train

    root = tmp_path_factory.mktemp("spark-b2b")
    write_b2b_demo(root / "data", n_accounts=B2B_ACCOUNTS, seed=1, file_format="parquet")
    runs = {}
    for engine in ENGINES:
        cfg = fast_config(root, engine)
        cfg["level"] = "account"
        runs[engine] = train(root / "data", cfg=cfg, output=root / engine), cfg
    return runs


def read_accounts(path) -> pd.DataFrame:
    """A written account table (a file or a dataset), indexed and sorted by account."""
    frame = pd.read_parquet(path)
    return frame.assign(account_id=frame["account_id"].astype(str)).set_index("account_id")


def test_account_features_rolled_up_on_the_cluster_equal_duckdbs(b2b_trained) -> None:
    import pyarrow.parquet as pq

    (duck, _), (spark_run, _) = b2b_trained["duckdb"], b2b_trained["spark"]
    a = read_accounts(duck.output / "features.parquet").sort_index()
    b = read_accounts(spark_run.output / "features.parquet").sort_index()
    assert len(a) == B2B_ACCOUNTS and a.shape[1] > 50
    rolled = ["account_people", "usage_spread", "usage_active_share", "influence_end_user",
              "nps_latest", "nps_category", "attr_region", "value_tier", "mix_api"]  # fmt: skip
    assert set(rolled) <= set(a.columns)
    clv = [c for c in a if c.startswith("clv_")]  # fitted on the summaries: a looser match
    assert_same_features(a.drop(columns=clv), b.drop(columns=clv))
    np.testing.assert_allclose(b[clv].to_numpy(float), a[clv].to_numpy(float), rtol=1e-6)
    dataset = read_accounts(spark_run.output / "features").sort_index()  # the executors'
    assert_same_features(b, dataset)
    meta = [json.loads(pq.read_schema(r.output / "features.parquet").metadata[b"personas"])
            for r in (duck, spark_run)]  # fmt: skip
    assert meta[1] == meta[0]  # the same features' metadata (descriptions of the roll-up)


def test_spark_finds_duckdbs_personas_of_accounts(b2b_trained) -> None:
    from mlflow.tracking import MlflowClient

    (duck, _), (spark_run, cfg) = b2b_trained["duckdb"], b2b_trained["spark"]
    ids = {"customer_id": str, "account_id": str}
    a, b = (pd.read_csv(r.output / "assignments.csv", dtype=ids) for r in (duck, spark_run))
    assert list(b.columns) == list(a.columns) and b["account_id"].is_unique
    merged = a.merge(b, on="account_id", suffixes=("_duckdb", "_spark"), validate="1:1")
    assert len(merged) == B2B_ACCOUNTS
    assert adjusted_rand_score(merged["persona_id_duckdb"], merged["persona_id_spark"]) == 1.0
    for column in ("persona_id", "persona_name", "is_outlier"):
        assert (merged[f"{column}_duckdb"] == merged[f"{column}_spark"]).all(), column
    np.testing.assert_allclose(merged["confidence_spark"], merged["confidence_duckdb"], atol=1e-4)
    people = [
        pd.read_csv(r.output / "people_assignments.csv", dtype=ids) for r in (duck, spark_run)
    ]
    assert people[1].equals(people[0])  # every person, in order, written by one executor
    assert len(people[1]) > 5 * B2B_ACCOUNTS
    x, y = (json.loads((r.output / "personas.json").read_text()) for r in (duck, spark_run))
    assert [p["persona_id"] for p in y] == [p["persona_id"] for p in x]
    exact = ("size share respondents promoters passives detractors nps nps_ci_low nps_ci_high "
             "name nps_vs_rest nps_p_value is_focus is_at_risk actions people people_nps "
             "nps_by_influence influence_gap account_nps").split()  # fmt: skip
    for p, q in zip(x, y, strict=True):
        assert {k: q[k] for k in exact} == {k: p[k] for k in exact}
        for key in ("revenue_share", "value_index", "revenue_mean"):
            assert q[key] == pytest.approx(p[key], abs=2e-3), key
    metrics = MlflowClient(tracking_uri=cfg["tracking"]["uri"]).get_run(spark_run.run_id)
    assert metrics.data.metrics["spark.assignment_agreement"] == 1.0
    assert metrics.data.metrics["n_accounts"] == B2B_ACCOUNTS
    assert metrics.data.metrics["n_people"] == len(people[1])


def test_a_sample_of_accounts_is_fitted_and_every_account_counted_on_the_cluster(
    spark, tmp_path
) -> None:
    """A base too large for the driver: collecting every account's row fails, the run
    does not (the driver fits on a sample of 150 of 1,000 accounts); the people's NPS by
    influence and the subscription value model are counted over everyone, on the cluster."""
    from features.accounts import latest_scores
    from features.spark import pandas_warnings_silenced
    from pipelines import value
    from pipelines.demo.accounts import write_b2b_demo
    from pipelines.train import train

    rows = write_b2b_demo(tmp_path / "data", n_accounts=1000, seed=2, file_format="parquet")
    cfg = fast_config(tmp_path, "spark")
    cfg["level"], cfg["spark"]["sample_size"] = "account", B2B_ACCOUNTS
    cfg["spark"]["bucket_size"] = 2500  # three executor tasks build the people's features
    result = train(tmp_path / "data", cfg=cfg, output=tmp_path / "out")
    assert len(result.assignments) == B2B_ACCOUNTS  # what the driver fitted on
    assert result.people["account_id"].nunique() == B2B_ACCOUNTS
    placed = pd.read_csv(result.output / "assignments.csv", dtype={"account_id": str})
    assert len(placed) == 1000 and placed["account_id"].is_unique
    people = pd.read_csv(result.output / "people_assignments.csv", dtype=str)
    assert len(people) == rows["customers"] and people["customer_id"].is_unique
    by_account = placed.set_index("account_id")["persona_id"].astype(str)
    assert (people["persona_id"] == people["account_id"].map(by_account)).all()
    personas = json.loads((result.output / "personas.json").read_text())
    sizes = placed["persona_id"].value_counts()
    assert {p["persona_id"]: p["size"] for p in personas} == sizes.to_dict()
    features = spark.read.parquet(str(result.output / "features"))
    scored = features.where("nps_latest IS NOT NULL").count()
    assert sum(p["respondents"] for p in personas) == scored  # every responding account
    with pandas_warnings_silenced():
        with pytest.raises(Exception, match="maxResultSize"):
            features.toPandas()
        assert len(features.limit(B2B_ACCOUNTS).toPandas()) == B2B_ACCOUNTS
    loaded = load_data(tmp_path / "data")
    try:  # the single-machine fit of the subscription model (invoices) on every customer
        whole = value._fit(Engine(loaded), loaded.as_of, cfg)["params"]
        respondents = len(latest_scores(Engine(loaded)))
    finally:
        loaded.con.close()
    assert sum(p["people"] for p in personas) == rows["customers"]  # every person, counted
    assert sum(p["people_nps"]["respondents"] for p in personas) == respondents
    assert sum(p["influence_gap"]["respondents_a"] for p in personas) > respondents / 10
    clv = json.loads((result.output / "clv_model.json").read_text())
    assert clv["kind"] == "subscription" and clv["customers_fitted"] == whole["customers_fitted"]
    assert clv == json.loads(json.dumps(whole))  # billing cycles and sBG: the same numbers


# -- the same run from tables of the metastore -----------------------------------------

METASTORE_DB = "personas_demo"


@pytest.fixture(scope="module")
def metastore_db(spark, demo):
    """The demo's tables in a metastore database; transactions as ``invoices``, whose
    ``amount`` is ``invoice_amount`` (names ``spark.tables`` and ``columns`` must map)."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {METASTORE_DB}")
    for path in sorted(demo.glob("*.parquet")):
        frame, name = spark.read.parquet(str(path)), path.stem
        if name == "transactions":
            frame, name = frame.withColumnRenamed("amount", "invoice_amount"), "invoices"
        frame.write.mode("overwrite").saveAsTable(f"{METASTORE_DB}.{name}")
    yield METASTORE_DB
    spark.sql(f"DROP DATABASE {METASTORE_DB} CASCADE")


def metastore_config(tmp_path, tables: dict) -> dict:
    cfg = fast_config(tmp_path, "spark")
    cfg["spark"]["tables"] = tables
    cfg["spark"]["staging_dir"] = str(tmp_path / "staging")
    cfg["columns"] = {"transactions": {"amount": "invoice_amount"}}
    return cfg


def test_train_from_metastore_tables_equals_the_parquet_folder(
    trained, metastore_db, tmp_path
) -> None:
    from pipelines.train import train

    cfg = metastore_config(tmp_path, {"transactions": "invoices"})
    result = train(f"spark:{metastore_db}", cfg=cfg, output=tmp_path / "out")
    folder, _ = trained["spark"]
    a = read_features(folder.output / "features.parquet")
    b = read_features(result.output / "features.parquet")
    clv = [c for c in a if c.startswith("clv_")]
    assert len(b) == DEMO_CUSTOMERS and clv
    assert_same_features(a.drop(columns=clv), b.drop(columns=clv))
    np.testing.assert_allclose(b[clv].to_numpy(float), a[clv].to_numpy(float), rtol=1e-6)
    x = pd.read_csv(folder.output / "assignments.csv", dtype={"customer_id": str})
    y = pd.read_csv(result.output / "assignments.csv", dtype={"customer_id": str})
    merged = x.merge(y, on="customer_id", suffixes=("_folder", "_metastore"), validate="1:1")
    assert len(merged) == DEMO_CUSTOMERS
    assert (merged["persona_id_folder"] == merged["persona_id_metastore"]).all()
    assert list((tmp_path / "staging").iterdir()) == []  # the snapshot went with the run
    quality = json.loads((result.output / "data_quality.json").read_text())
    assert quality["source"] == f"spark:{metastore_db}"
    assert quality["tables"]["transactions"]["file"] == f"metastore table {metastore_db}.invoices"


def test_a_missing_metastore_table_is_one_paragraph_before_any_work(metastore_db, tmp_path) -> None:
    from pipelines.train import train

    cfg = metastore_config(tmp_path, {"transactions": "payments"})
    with pytest.raises(DataError, match=f"no table {metastore_db}.payments") as caught:
        train(f"spark:{metastore_db}", cfg=cfg, output=tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message
    assert "customers, engagement_events, feedback, invoices, support_tickets" in message
    assert not (tmp_path / "staging").exists() and not (tmp_path / "mlflow.db").exists()
    with pytest.raises(DataError, match="no database 'nowhere'"):
        train("spark:nowhere", cfg=cfg, output=tmp_path / "out")


def test_bad_values_in_metastore_tables_are_named_as_for_files(spark, tmp_path) -> None:
    from features.spark import pandas_warnings_silenced
    from pipelines.train import load

    spark.sql("CREATE DATABASE IF NOT EXISTS personas_bad")
    try:
        tables = edge_tables()
        tables["transactions"][1]["amount"] = "ten"
        for name in ("customers", "transactions"):
            frame = pd.DataFrame(tables[name]).astype(str)
            with pandas_warnings_silenced():
                table = spark.createDataFrame(frame)
            table.write.saveAsTable(f"personas_bad.{name}")
        cfg = metastore_config(tmp_path, {})
        cfg["columns"] = {}
        with (
            pytest.raises(DataError) as caught,
            engines.data_source("spark:personas_bad", cfg) as (source, names),
        ):
            load(source, cfg, names).con.close()
    finally:
        spark.sql("DROP DATABASE personas_bad CASCADE")
    assert str(caught.value).startswith(
        "The data breaks the contract: metastore table personas_bad.transactions: column "
        "'amount' is not a number in 1 of 8 rows (e.g. 'ten')"
    )

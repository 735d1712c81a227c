"""A corpus of broken exports, each driven through the real ``personas`` command.

Every case is a small data folder (60 customers, three planted groups) with one thing
wrong. A case either

- fails: exit status 1 and a one-paragraph message naming the file, the column, how many
  rows and a few examples, with no traceback (``personas validate``, which is cheap, or
  ``personas train`` where only the pipeline can tell); or
- succeeds: ``personas train`` writes ``assignments.csv`` with every customer exactly
  once, and ``data_quality.json`` counts the anomaly.

The commands of all selected cases run up front, a few at a time (the ``runs`` fixture),
into one MLflow store for the module (created by the first train, before the others
start). Trains use a quick model config (k-means only, k up to 5, few resamples, no model
registration): the corpus is about the data, not the model search. The table of cases and
behaviours is in the README's data section.

Customer ids are text and compared exactly (after trimming spaces): ``007`` and ``7`` are
two customers, and rows naming ``7`` when customers has ``007`` count as unknown
customers, with a hint that the ids would match once written alike. Whole numbers from a
typed source (a Parquet ``int64`` 7, or a ``double`` 7.0) read as ``7``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv_tables

Tables = dict[str, pd.DataFrame]
N = 60  # customers of the base folder: enough for k-means, a few seconds per train
CLI = [sys.executable, "-m", "pipelines"]
QUICK_MODEL = """
model: {k_max: 5, n_init: 1, density_shares: [], stability_resamples: 3}
report: {map_sample: 200}
tracking: {model_name: null}
"""


def _stamps(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` timestamps between 2026-01-01 and 2026-06-30, as an export writes them."""
    secs = rng.integers(0, 180 * 86_400, n)
    return list((pd.Timestamp("2026-01-01") + pd.to_timedelta(secs, unit="s")).astype(str))


def base_tables(n: int = N) -> Tables:
    """A clean folder: customers with attributes, usage, transactions and feedback.

    Three planted groups (light, medium, heavy users and buyers); every value is a string,
    so each case controls the exact text of the CSV files.
    """
    rng = np.random.default_rng(7)
    ids = [f"C{i:03d}" for i in range(1, n + 1)]
    group = np.arange(n) % 3
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
            "region": rng.choice(["EU", "US", "APAC"], n),
            "plan": np.array(["Starter", "Pro", "Enterprise"])[group],
            "seats": rng.integers(1, 200, n).astype(str),
        }
    )
    pools = [["reports"], ["reports", "export"], ["api", "alerts", "export", "reports"]]
    usage, buys = [], []
    for i, (cid, g) in enumerate(zip(ids, group, strict=True)):
        k = (2, 6, 14)[g]
        usage += [
            {"customer_id": cid, "timestamp": t, "feature": pools[g][j % len(pools[g])],
             "quantity": str(1 + (i + j) % 3)}
            for j, t in enumerate(_stamps(rng, k))
        ]  # fmt: skip
        buys += [
            {"customer_id": cid, "timestamp": t, "amount": f"{(20, 120, 900)[g] * (1 + j):.2f}"}
            for j, t in enumerate(_stamps(rng, 1 + g))
        ]
    feedback = pd.DataFrame(
        {
            "customer_id": ids[::2],
            "timestamp": _stamps(rng, len(ids[::2])),
            "nps": [str((3, 8, 10)[g]) for g in group[::2]],
            "csat": [str((2, 4, 5)[g]) for g in group[::2]],
            "comment": [("slow", "fine", "love the API")[g] for g in group[::2]],
        }
    )
    return {
        "customers": customers,
        "usage_events": pd.DataFrame(usage),
        "transactions": pd.DataFrame(buys),
        "feedback": feedback,
    }


@dataclass(frozen=True)
class Case:
    """One broken export and what the command must do with it.

    Attributes
    ----------
    id : str
        Test id.
    edit : callable, optional
        Changes the tables (in place) before they are written as CSV.
    files : callable, optional
        Changes the written folder (encodings, separators, Parquet files).
    command : {"validate", "train"}
        The command to run.
    fails_with : tuple of str
        Parts of the error message; empty when the case must succeed.
    counts : dict
        For a success: path into ``data_quality.json`` -> expected value.
    customers : list of str, optional
        For a success: the customer ids ``assignments.csv`` must hold (default: those of
        the customers table as written).
    xfail : str, optional
        Why the case fails for a reason outside ``features/`` (strict).
    """

    id: str
    edit: Callable[[Tables], None] | None = None
    files: Callable[[Path], None] | None = None
    command: str = "validate"
    fails_with: tuple[str, ...] = ()
    counts: dict[tuple, object] = field(default_factory=dict)
    customers: list[str] | None = None
    xfail: str | None = None


# ---------------------------------------------------------------- edits


def _set(table: str, column: str, rows: list[int], values: list[str]):
    def edit(t: Tables) -> None:
        t[table].loc[rows, column] = values

    return edit


def _rename(table: str, old: str, new: str):
    def edit(t: Tables) -> None:
        t[table] = t[table].rename(columns={old: new})

    return edit


def _keep_customers(n: int):
    def edit(t: Tables) -> None:
        keep = set(t["customers"]["customer_id"].head(n))
        for name, frame in t.items():
            t[name] = frame[frame["customer_id"].isin(keep)].reset_index(drop=True)

    return edit


def _duplicates(t: Tables) -> None:
    t["customers"] = pd.concat([t["customers"], t["customers"].head(2)], ignore_index=True)


def _header_only(*tables: str):
    def edit(t: Tables) -> None:
        for name in tables:
            t[name] = t[name].head(0)

    return edit


def _unknown_customers(share: float):
    def edit(t: Tables) -> None:
        n = round(share * len(t["transactions"]))
        t["transactions"].loc[: n - 1, "customer_id"] = [f"X{i:03d}" for i in range(n)]

    return edit


def _ids(make: Callable[[int], str], tables: tuple[str, ...] = ("customers",)):
    """Rewrite customer ``C007`` as ``make(7)`` in the given tables."""

    def edit(t: Tables) -> None:
        for name in tables:
            t[name]["customer_id"] = [make(int(c[1:])) for c in t[name]["customer_id"]]

    return edit


def _unicode_ids(t: Tables) -> None:
    names = ["客户-{}", "Zoë-{}", "Ωmega {}", "🙂{}", "Łódź/{}", "naïve'{}"]
    _ids(lambda i: names[i % len(names)].format(i), tuple(t))(t)


def _all_refunds(t: Tables) -> None:
    t["transactions"]["amount"] = "-" + t["transactions"]["amount"]


def _constant(t: Tables) -> None:
    t["customers"]["plan"] = "Pro"
    t["usage_events"]["feature"] = "reports"


def _alike(t: Tables) -> None:
    """Every customer signed up, used, bought the same thing at the same time."""
    _constant(t)
    t["customers"]["signup_date"] = "2025-01-01"
    for name in ("usage_events", "transactions"):
        frame = t[name]
        first = frame.drop_duplicates("customer_id").drop(columns="customer_id").iloc[0]
        t[name] = t["customers"][["customer_id"]].assign(**first.to_dict())
    t["feedback"] = t["feedback"].head(0)


def _outliers(t: Tables) -> None:
    t["transactions"].loc[0, "amount"] = "1e12"
    t["usage_events"].loc[0, "quantity"] = "1000000000"


def _add_column(table: str, column: str, values):
    def edit(t: Tables) -> None:
        t[table][column] = values

    return edit


def _both(*edits):
    def edit(t: Tables) -> None:
        for e in edits:
            e(t)

    return edit


# ---------------------------------------------------------------- file changes


def _rewrite(name: str, fn: Callable[[bytes], bytes]):
    def change(folder: Path) -> None:
        path = folder / f"{name}.csv"
        path.write_bytes(fn(path.read_bytes()))

    return change


def _every_file(fn: Callable[[bytes], bytes]):
    def change(folder: Path) -> None:
        for path in folder.glob("*.csv"):
            path.write_bytes(fn(path.read_bytes()))

    return change


def _semicolons(folder: Path) -> None:
    for path in folder.glob("*.csv"):
        pd.read_csv(path, dtype=str, keep_default_na=False).to_csv(path, sep=";", index=False)


def _decimal_commas(folder: Path) -> None:
    path = folder / "transactions.csv"
    frame = pd.read_csv(path, dtype=str)
    frame["amount"] = frame["amount"].str.replace(".", ",", regex=False)
    frame.to_csv(path, sep=";", index=False)


def _float_ids_parquet(folder: Path) -> None:
    """Customers as Parquet whose ids went through a float column: 1.0, 2.0..."""
    frame = pd.read_csv(folder / "customers.csv", dtype=str)
    frame["customer_id"] = frame["customer_id"].astype(float)
    frame.to_parquet(folder / "customers.parquet")
    (folder / "customers.csv").unlink()


def _ragged(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[3] = lines[3] + b",1,200"  # an unquoted thousands separator
    return b"\n".join(lines)


def _latin1(data: bytes) -> bytes:
    return data.decode("utf-8").replace("EU", "Zoë-Süd").encode("latin-1")


def _utf16(data: bytes) -> bytes:
    return data.decode("utf-8").encode("utf-16")


def _empty(_: bytes) -> bytes:
    return b""


# ---------------------------------------------------------------- the corpus


CASES = [
    # ---- the export is broken: the run stops with a message
    Case(
        "missing-required-column",
        edit=lambda t: t.update(usage_events=t["usage_events"].drop(columns="feature")),
        fails_with=("usage_events.csv lacks the required column 'feature'", "Its columns are"),
    ),
    Case(
        "misspelled-column",
        edit=_rename("transactions", "amount", "amonut"),
        fails_with=("transactions.csv", "'amount' (did you mean 'amonut'?)"),
    ),
    Case(
        "misspelled-customer-id",
        edit=_rename("customers", "customer_id", "CustomerID"),
        fails_with=("customers.csv", "'customer_id' (did you mean 'CustomerID'?)"),
    ),
    Case(
        "duplicate-customer-ids",
        edit=_duplicates,
        fails_with=(
            "customers.csv: column 'customer_id' is duplicated in 2 of 62 rows",
            "'C001'",
            "'C002'",
        ),
    ),
    Case(
        "nps-out-of-range",
        edit=_set("feedback", "nps", [0, 1], ["11", "-1"]),
        fails_with=(
            "feedback.csv: column 'nps' must be a whole number from 0 to 10 in 2 of 30 rows",
            "'11'",
            "'-1'",
        ),
    ),
    Case(
        "nps-not-a-number",
        edit=_set("feedback", "nps", [0, 1], ["ten", "9/10"]),
        fails_with=("feedback.csv: column 'nps' is not a number in 2 of 30 rows", "'ten'"),
    ),
    Case(
        "csat-out-of-range",
        edit=_set("feedback", "csat", [0, 1, 2], ["0", "6", "50"]),
        fails_with=(
            "feedback.csv: column 'csat' must be a whole number 1-5 in 3 of 30 rows",
            "'50'",
        ),
    ),
    Case(
        "unparseable-timestamps",
        edit=_set(
            "usage_events", "timestamp", [0, 1, 2], ["yesterday", "2026-02-30", "31/12/2026"]
        ),
        fails_with=(
            "usage_events.csv: column 'timestamp' is not a timestamp in 3 of",
            "'yesterday'",
            "'31/12/2026'",
        ),
    ),
    Case(
        "non-finite-numbers",
        edit=_set("transactions", "amount", [0, 1, 2], ["inf", "-Infinity", "1e400"]),
        fails_with=("transactions.csv: column 'amount' is not a number in 3 of", "'inf'"),
    ),
    Case(
        "currency-in-amount",
        edit=_set("transactions", "amount", [0, 1], ["$12.50", "12 EUR"]),
        fails_with=(
            "transactions.csv: column 'amount' is not a number in 2 of",
            "'$12.50'",
            "currency",
        ),
    ),
    Case(
        "semicolons-and-decimal-commas",
        files=_decimal_commas,
        fails_with=(
            "transactions.csv: column 'amount' is not a number in",
            "decimal commas",
        ),
    ),
    Case(
        "empty-file-0-bytes",
        files=_rewrite("usage_events", _empty),
        fails_with=("usage_events.csv is empty (0 bytes", "0 rows", "remove the file"),
    ),
    Case(
        "empty-customers-0-bytes",
        files=_rewrite("customers", _empty),
        fails_with=("customers.csv is empty (0 bytes", "0 rows", "customers is required"),
    ),
    Case(
        "header-only-customers",
        edit=_header_only("customers"),
        fails_with=("customers.csv has a header but no rows", "column 'customer_id'"),
    ),
    Case(
        "every-event-table-0-rows",
        edit=_header_only("usage_events", "transactions", "feedback"),
        fails_with=("No table has a single valid timestamp", "usage_events.csv: 0 rows"),
    ),
    Case(
        "many-unknown-customers",
        edit=_unknown_customers(0.2),
        fails_with=(
            "transactions.csv: 24 of 120 rows (20.0%) name 24 customer ids that are not in "
            "customers",
            "'X000'",
            "max_unknown_share",
        ),
    ),
    Case(
        "zero-padded-vs-plain-ids",
        edit=_both(
            _ids(lambda i: f"{i:04d}", ("customers", "transactions", "feedback")),
            _ids(str, ("usage_events",)),
        ),
        fails_with=(
            "usage_events.csv:",
            "customer ids that are not in customers",
            "60 of these ids match a customer id once case, leading zeros",
            "'1' vs '0001'",
        ),
    ),
    Case(
        "latin-1-encoding",
        files=_rewrite("customers", _latin1),
        fails_with=("customers.csv is not UTF-8 text", "Latin-1"),
    ),
    Case(
        "utf-16-encoding",
        files=_rewrite("customers", _utf16),
        fails_with=("customers.csv is not UTF-8 text", "UTF-16"),
    ),
    Case(
        "row-with-extra-fields",
        files=_rewrite("transactions", _ragged),
        fails_with=("transactions.csv: 1 of 120 rows", "the header's 3 fields", "line 4"),
    ),
    Case(
        "single-customer",
        edit=_keep_customers(1),
        command="train",
        fails_with=("customers.csv", "Only 1 customer"),
    ),
    Case(
        "fewer-customers-than-personas",
        edit=_keep_customers(3),
        command="train",
        fails_with=("customers.csv", "Only 3 customers", "at least 4"),
    ),
    Case(
        "all-customers-alike",
        edit=_alike,
        command="train",
        fails_with=("All customers have the same features",),
    ),
    # ---- odd but usable: the run goes on and the summary counts what was odd
    Case(
        "byte-order-mark",
        files=_every_file(lambda b: b"\xef\xbb\xbf" + b),
        command="train",
        counts={("tables", "customers", "rows_used"): N},
    ),
    Case(
        "semicolon-separated",
        files=_semicolons,
        command="train",
        counts={("tables", "transactions", "rows_invalid"): 0},
    ),
    Case(
        "future-timestamps",
        edit=_set("usage_events", "timestamp", [0, 1, 2], ["2099-01-01"] * 3),
        command="train",
        counts={
            ("tables", "usage_events", "rows_in_future"): 3,
            ("tables", "usage_events", "rows_after_as_of"): 3,
        },
    ),
    Case(
        "all-null-attribute",
        edit=_add_column("customers", "notes", ""),
        command="train",
        counts={("tables", "customers", "attributes_empty"): ["notes"]},
    ),
    Case(
        "constant-columns",
        edit=_constant,
        command="train",
        counts={("tables", "customers", "attributes_constant"): ["plan"]},
    ),
    Case(
        "mixed-types-in-attribute",
        edit=_set("customers", "seats", [0, 1], ["ten", "n/a"]),
        command="train",
        counts={("tables", "customers", "attributes", "seats", "numeric"): N - 2},
    ),
    Case(
        "missing-value-markers",
        edit=_both(
            _set("feedback", "nps", [0, 1], ["NA", "null"]),
            _set("feedback", "csat", [2], ["N/A"]),
            _set("usage_events", "quantity", [0], ["NaN"]),
        ),
        command="train",
        counts={
            ("tables", "feedback", "missing"): {"nps": 2, "csat": 1},
            ("tables", "usage_events", "missing"): {"quantity": 1},
        },
    ),
    Case(
        "unicode-ids",
        edit=_unicode_ids,
        command="train",
        counts={("tables", "usage_events", "unknown_customer_rows"): 0},
    ),
    Case(
        "float-ids-in-parquet",
        edit=_ids(str, ("customers", "usage_events", "transactions", "feedback")),
        files=_float_ids_parquet,
        command="train",
        counts={("tables", "transactions", "unknown_customer_rows"): 0},
        customers=[str(i) for i in range(1, N + 1)],
    ),
    Case(
        "a-few-unknown-customers",
        edit=_unknown_customers(0.025),
        command="train",
        counts={
            ("tables", "transactions", "unknown_customer_rows"): 3,
            ("tables", "transactions", "unknown_customer_ids"): 3,
        },
    ),
    Case(
        "refunds",
        edit=_set("transactions", "amount", [0, 1, 2, 3, 4], ["-20.00"] * 5),
        command="train",
        counts={("tables", "transactions", "refund_rows"): 5},
    ),
    Case(
        "every-transaction-a-refund",
        edit=_all_refunds,
        command="train",
        counts={("tables", "transactions", "refund_rows"): 120},
    ),
    Case(
        "huge-outliers",
        edit=_outliers,
        command="train",
        counts={
            ("tables", "transactions", "extreme_values", "amount", "rows"): 1,
            ("tables", "usage_events", "extreme_values", "quantity", "rows"): 1,
        },
    ),
    Case(
        "table-with-0-rows",
        edit=_header_only("feedback"),
        command="train",
        counts={("tables", "feedback", "rows"): 0},
    ),
    Case(
        "just-enough-customers",
        edit=_keep_customers(4),
        command="train",
        counts={("tables", "customers", "rows_used"): 4},
    ),
]


# ---------------------------------------------------------------- running the commands


@dataclass
class Run:
    """A case's folder, output folder and finished command."""

    data: Path
    output: Path
    result: subprocess.CompletedProcess


def _prepare(case: Case, root: Path) -> Path:
    tables = base_tables()
    if case.edit:
        case.edit(tables)
    folder = write_csv_tables(root / case.id / "data", tables)
    if case.files:
        case.files(folder)
    return folder


def _command(case: Case, data: Path, output: Path, env: dict, config: Path):
    args = ["--data", str(data)]
    if case.command == "train":
        args += ["--output", str(output), "--config", str(config)]
    return subprocess.run(
        [*CLI, case.command, *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Environment pointing MLflow at one SQLite store for the whole module."""
    root = tmp_path_factory.mktemp("mlflow")
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory, store) -> dict[str, Run]:
    """Run the command of every selected case, a few at a time (see the module docstring)."""
    wanted = {
        item.callspec.params["case"].id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    cases = [c for c in CASES if c.id in wanted]
    root = tmp_path_factory.mktemp("corpus")
    config = root / "quick_model.yaml"
    config.write_text(QUICK_MODEL)
    folders = {c.id: _prepare(c, root) for c in cases}
    outputs = {c.id: root / c.id / "out" for c in cases}

    def one(case: Case) -> tuple[str, subprocess.CompletedProcess]:
        return case.id, _command(case, folders[case.id], outputs[case.id], store, config)

    trains = [c for c in cases if c.command == "train"]
    done = [one(trains[0])] if trains else []  # creates the MLflow store
    rest = [c for c in cases if c.command != "train"] + trains[1:]
    with ThreadPoolExecutor(max_workers=max(2, min(6, os.cpu_count() or 2))) as pool:
        done += list(pool.map(one, rest))
    return {cid: Run(folders[cid], outputs[cid], result) for cid, result in done}


def _message(result: subprocess.CompletedProcess) -> str:
    """The error paragraph the command printed (log lines before it left out)."""
    assert "error:" in result.stderr, result.stderr[-2000:]
    return result.stderr[result.stderr.index("error:") :].strip()


def _lookup(quality: dict, path: tuple):
    value = quality
    for key in path:
        value = value[key]
    return value


def _expected_ids(case: Case, data: Path) -> list[str]:
    if case.customers is not None:
        return case.customers
    ids = pd.read_csv(data / "customers.csv", dtype=str, keep_default_na=False, sep=None,
                      engine="python", encoding="utf-8-sig")["customer_id"]  # fmt: skip
    return list(ids.str.strip())


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES if c.fails_with])
def test_bad_export_fails_with_a_clear_message(case: Case, runs: dict[str, Run]) -> None:
    result = runs[case.id].result
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    message = _message(result)
    assert "\n\n" not in message and "unexpected" not in message, message
    for part in case.fails_with:
        assert part in message, f"{part!r} not in {message!r}"
    assert not runs[case.id].output.exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", [_param(c) for c in CASES if not c.fails_with])
def test_odd_export_succeeds_and_is_counted(case: Case, runs: dict[str, Run]) -> None:
    run = runs[case.id]
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    assert "Traceback" not in run.result.stderr
    assignments = pd.read_csv(
        run.output / "assignments.csv", dtype={"customer_id": str}, keep_default_na=False
    )
    expected = _expected_ids(case, run.data)
    assert assignments["customer_id"].is_unique
    assert sorted(assignments["customer_id"]) == sorted(expected)
    quality = json.loads((run.output / "data_quality.json").read_text())
    for path, value in case.counts.items():
        assert _lookup(quality, path) == value, path


def test_every_case_has_a_unique_id() -> None:
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids)

"""Tests for loading and validating the input tables (``features.load_data``).

Each rule of the input contract (``CONTRACT.md`` section 1) has a test here: bad values stop
the run with a message naming the file, the column, how many rows and a few examples, or
are quarantined when the config says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from conftest import records

from features import DataError, build_features, load_data
from features.contract import PII_PATTERNS
from pipelines.config import DEFAULT_CONFIG

CONF = yaml.safe_load(DEFAULT_CONFIG.read_text())
PRIVACY = CONF["privacy"]
PARAMS = {**CONF["features"], "seed": CONF["seed"]}

CUSTOMERS = [{"customer_id": c} for c in ("A", "B", "C", "D")]
USAGE = [
    {"customer_id": "A", "timestamp": "2026-03-01", "feature": "reports"},
    {"customer_id": "B", "timestamp": "2026-03-02 08:30:00", "feature": "export"},
]


def _feedback(column: str, values: list[str]) -> list[dict]:
    """One feedback row per value, customers A-D in turn, one day apart."""
    return [
        {"customer_id": "ABCD"[i % 4], "timestamp": f"2026-01-{i + 1:02d}", column: v}
        for i, v in enumerate(values)
    ]


def _error(folder: Path, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        load_data(folder, **kwargs)
    return str(err.value)


def _rows(data, table: str) -> pd.DataFrame:
    return data.con.execute(f"SELECT * FROM {table}").df()


# ---------------------------------------------------------------- which tables are there


def test_missing_source_is_reported(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nope")


def test_no_customers_table(write_tables) -> None:
    folder = write_tables({"usage_events": USAGE})
    message = _error(folder)
    assert str(folder) in message
    assert "no customers table" in message


def test_only_the_customers_table(write_tables) -> None:
    message = _error(write_tables({"customers": CUSTOMERS}))
    assert "only the customers table" in message
    assert "usage_events" in message and "transactions" in message


def test_table_given_twice_is_rejected(write_tables) -> None:
    folder = write_tables({"customers": CUSTOMERS, "usage_events": USAGE})
    pd.DataFrame(CUSTOMERS).to_parquet(folder / "customers.parquet")
    message = _error(folder)
    assert "customers.csv" in message and "customers.parquet" in message


# ---------------------------------------------------------------- columns


def test_missing_required_column_suggests_the_misspelling(write_tables) -> None:
    usage = [{"custmer_id": r["customer_id"], **r} for r in USAGE]
    for r in usage:
        del r["customer_id"]
    folder = write_tables({"customers": CUSTOMERS, "usage_events": usage})
    message = _error(folder)
    assert str(folder / "usage_events.csv") in message
    assert "lacks the required column 'customer_id'" in message
    assert "did you mean 'custmer_id'?" in message
    assert "columns: {usage_events: {customer_id: <your column>}}" in message


def test_column_names_match_case_insensitively(write_tables) -> None:
    usage = [{"Customer_ID": "A", "TimeStamp": "2026-03-01", "Feature": "x"}]
    data = load_data(write_tables({"customers": CUSTOMERS, "usage_events": usage}))
    assert data.columns["usage_events"] == ["customer_id", "timestamp", "feature"]
    assert _rows(data, "usage_events")["feature"].tolist() == ["x"]


def test_column_mapping(write_tables) -> None:
    transactions = [
        {"customer_id": "A", "paid_at": "2026-03-01", "revenue_usd": "120.5"},
        {"customer_id": "B", "paid_at": "2026-03-02", "revenue_usd": "-20"},
    ]
    folder = write_tables({"customers": CUSTOMERS, "transactions": transactions})
    data = load_data(
        folder, columns={"transactions": {"amount": "revenue_usd", "timestamp": "paid_at"}}
    )
    rows = _rows(data, "transactions").set_index("customer_id")
    assert rows["amount"].to_dict() == {"A": 120.5, "B": -20.0}
    assert rows.loc["B", "timestamp"] == pd.Timestamp("2026-03-02")
    table = build_features(data, PARAMS)
    assert table.frame.loc["A", "revenue_monetary"] == 120.5


def test_mapping_to_an_absent_column_errors(write_tables) -> None:
    transactions = [{"customer_id": "A", "timestamp": "2026-03-01", "amount": "1"}]
    folder = write_tables({"customers": CUSTOMERS, "transactions": transactions})
    message = _error(folder, columns={"transactions": {"amount": "revenue_usd"}})
    assert "transactions.amount" in message
    assert "'revenue_usd'" in message
    assert str(folder / "transactions.csv") in message
    assert "customer_id, timestamp, amount" in message  # the columns it does have


def test_a_typo_in_a_mapped_column_gets_a_did_you_mean(write_tables) -> None:
    transactions = [{"customer_id": "A", "timestamp": "2026-03-01", "amount_eur": "1"}]
    folder = write_tables({"customers": CUSTOMERS, "transactions": transactions})
    message = _error(folder, columns={"transactions": {"amount": "amount_uer"}})
    assert "did you mean 'amount_eur'?" in message
    message = _error(folder, columns={"transactions": {"amonut": "amount_eur"}})
    assert "did you mean 'amount'?" in message


def test_mapping_an_unknown_contract_column_errors(write_tables) -> None:
    folder = write_tables({"customers": CUSTOMERS, "usage_events": USAGE})
    message = _error(folder, columns={"usage_events": {"qty": "quantity"}})
    assert "no column 'qty' in usage_events" in message


# ---------------------------------------------------------------- bad values

BAD_VALUES = [
    # table, column, values written, rule in the message, bad rows, example
    ("feedback", "nps", ["9", "11", "11", "3"], "must be a whole number from 0 to 10", 2, "11"),
    ("feedback", "nps", ["9", "ten", "8"], "is not a number", 1, "ten"),
    ("feedback", "nps", ["7.5", "8"], "must be a whole number from 0 to 10", 1, "7.5"),
    ("feedback", "csat", ["6", "5", "1"], "must be a whole number 1-5", 1, "6"),
    ("feedback", "timestamp", ["2026-01-01", "yesterday"], "is not a timestamp", 1, "yesterday"),
    ("usage_events", "quantity", ["2", "-1"], "must be >= 0", 1, "-1"),
    ("transactions", "amount", ["10", "12,50"], "is not a number", 1, "12,50"),
]  # fmt: skip


def _bad_tables(table: str, column: str, values: list[str]) -> dict:
    base = {
        "feedback": {"nps": "8"},
        "usage_events": {"feature": "x", "quantity": "1"},
        "transactions": {"amount": "10"},
    }[table]
    rows = [
        {"customer_id": "ABCD"[i % 4], "timestamp": f"2026-01-{i + 1:02d}", **base, column: v}
        for i, v in enumerate(values)
    ]
    return {"customers": CUSTOMERS, table: rows}


@pytest.mark.parametrize(
    ("table", "column", "values", "rule", "n_bad", "example"),
    BAD_VALUES,
    ids=[f"{t}.{c}={e}" for t, c, _, _, _, e in BAD_VALUES],
)
def test_bad_value_names_file_column_count_and_examples(
    write_tables, table, column, values, rule, n_bad, example
) -> None:
    folder = write_tables(_bad_tables(table, column, values))
    message = _error(folder)
    assert (
        f"{folder / f'{table}.csv'}: column {column!r} {rule} in {n_bad} of {len(values)} rows "
        f"(e.g. {example!r})"
    ) in message
    assert "validation.on_error: quarantine" in message


def test_duplicate_customer_id(write_tables) -> None:
    customers = [*CUSTOMERS, {"customer_id": "B"}, {"customer_id": " C "}]
    folder = write_tables({"customers": customers, "usage_events": USAGE})
    message = _error(folder)
    assert (
        f"{folder / 'customers.csv'}: column 'customer_id' is duplicated in 2 of 6 rows" in message
    )
    assert "'B'" in message and "'C'" in message


def test_empty_customer_id(write_tables) -> None:
    folder = write_tables({"customers": [*CUSTOMERS, {"customer_id": ""}], "usage_events": USAGE})
    assert "column 'customer_id' is empty in 1 of 5 rows" in _error(folder)


def test_several_problems_are_reported_together(write_tables) -> None:
    feedback = [
        {"customer_id": "A", "timestamp": "2026-01-01", "nps": "12", "csat": "9"},
        {"customer_id": "B", "timestamp": "soon", "nps": "8", "csat": "4"},
    ]
    message = _error(write_tables({"customers": CUSTOMERS, "feedback": feedback}))
    for part in ("column 'nps'", "column 'csat'", "column 'timestamp'"):
        assert part in message


def test_examples_are_capped(write_tables) -> None:
    values = [str(v) for v in range(11, 21)]
    folder = write_tables({"customers": CUSTOMERS, "feedback": _feedback("nps", values)})
    message = _error(folder, validation={"examples": 3})
    assert "in 10 of 10 rows" in message
    quoted = re.search(r"\(e\.g\. ([^)]*)\)", message).group(1)
    assert len(quoted.split(", ")) == 3


def test_quarantine_sets_bad_rows_aside_and_keeps_the_rest(write_tables) -> None:
    customers = [*CUSTOMERS, {"customer_id": "B"}]
    feedback = _feedback("nps", ["9", "11", "ten", "3", "7"])
    folder = write_tables({"customers": customers, "feedback": feedback})
    data = load_data(folder, validation={"on_error": "quarantine"})

    bad = data.quarantine["feedback"].set_index("customer_id")
    assert bad["reason"].to_dict() == {
        "B": "nps must be a whole number from 0 to 10",
        "C": "nps is not a number",
    }
    # The values as written in the file, not as parsed (NaN), so the user sees what to fix.
    assert bad["nps"].to_dict() == {"B": "11", "C": "ten"}
    assert list(data.quarantine["feedback"].columns) == ["customer_id", "timestamp", "nps",
                                                         "reason"]  # fmt: skip
    kept = _rows(data, "feedback")
    assert sorted(zip(kept["customer_id"], kept["nps"], strict=True)) == [
        ("A", 7.0), ("A", 9.0), ("D", 3.0),
    ]  # fmt: skip

    assert data.quarantine["customers"]["reason"].tolist() == ["customer_id is duplicated"]
    assert sorted(_rows(data, "customers")["customer_id"]) == ["A", "B", "C", "D"]

    info = data.quality["tables"]["feedback"]
    assert info["rows"] == 5 and info["rows_invalid"] == 2 and info["rows_used"] == 3
    assert info["invalid"] == {
        "nps is not a number": 1,
        "nps must be a whole number from 0 to 10": 1,
    }
    assert data.quality["tables"]["customers"]["rows_used"] == 4
    assert len(data.quality["problems"]) == 3


def test_quarantine_reason_lists_every_broken_rule(write_tables) -> None:
    feedback = [
        {"customer_id": "A", "timestamp": "2026-01-01", "nps": "12", "csat": "0"},
        {"customer_id": "B", "timestamp": "2026-01-02", "nps": "8", "csat": "4"},
    ]
    folder = write_tables({"customers": CUSTOMERS, "feedback": feedback})
    data = load_data(folder, validation={"on_error": "quarantine"})
    assert data.quarantine["feedback"]["reason"].tolist() == [
        "nps must be a whole number from 0 to 10; csat must be a whole number 1-5"
    ]
    assert _rows(data, "feedback")["customer_id"].tolist() == ["B"]


def test_clean_data_has_no_quarantine(write_tables) -> None:
    data = load_data(write_tables({"customers": CUSTOMERS, "usage_events": USAGE}))
    assert data.quarantine == {}
    assert data.quality["problems"] == []
    assert data.n_customers == 4


# ---------------------------------------------------------------- unknown customers


def test_too_many_unknown_customers_fail(write_tables) -> None:
    usage = [
        {"customer_id": c, "timestamp": "2026-03-01", "feature": "x"} for c in ("A", "A", "Z", "Y")
    ]
    folder = write_tables({"customers": CUSTOMERS, "usage_events": usage})
    message = _error(folder)
    assert str(folder / "usage_events.csv") in message
    assert "2 of 4 rows (50.0%) name 2 customer ids that are not in customers" in message
    assert "'Z'" in message and "'Y'" in message
    assert "max_unknown_share = 5.0%" in message


def test_a_few_unknown_customers_are_counted_and_left_out(write_tables) -> None:
    usage = [
        {"customer_id": c, "timestamp": f"2026-03-{d:02d}", "feature": "x"}
        for d, c in enumerate(["A"] * 24 + ["Z"], start=1)
    ]
    data = load_data(write_tables({"customers": CUSTOMERS, "usage_events": usage}))
    info = data.quality["tables"]["usage_events"]
    assert info["unknown_customer_rows"] == 1
    assert info["unknown_customer_ids"] == 1
    assert info["unknown_customer_examples"] == ["Z"]
    assert info["rows_used"] == 24
    assert set(_rows(data, "usage_events")["customer_id"]) == {"A"}


def test_unknown_share_limit_is_configurable(write_tables) -> None:
    usage = [{"customer_id": c, "timestamp": "2026-03-01", "feature": "x"} for c in ("A", "Z")]
    folder = write_tables({"customers": CUSTOMERS, "usage_events": usage})
    data = load_data(folder, validation={"max_unknown_share": 0.5})
    assert data.quality["tables"]["usage_events"]["unknown_customer_rows"] == 1
    assert "0.0%" in _error(folder, validation={"max_unknown_share": 0.0})


def test_customer_ids_are_trimmed(write_tables) -> None:
    usage = [{"customer_id": " A ", "timestamp": "2026-03-01", "feature": "x"}]
    data = load_data(write_tables({"customers": CUSTOMERS, "usage_events": usage}))
    assert data.quality["tables"]["usage_events"]["unknown_customer_rows"] == 0
    assert _rows(data, "usage_events")["customer_id"].tolist() == ["A"]


# ---------------------------------------------------------------- time


def test_timezone_offsets_are_converted_to_utc(write_tables) -> None:
    usage = [
        {"customer_id": "A", "timestamp": "2026-01-01T10:00:00+02:00", "feature": "x"},
        {"customer_id": "B", "timestamp": "2026-01-01 10:00:00-05:00", "feature": "x"},
        {"customer_id": "C", "timestamp": "2026-01-01T03:00:00Z", "feature": "x"},
        {"customer_id": "D", "timestamp": "2026-01-01 03:00:00", "feature": "x"},
    ]
    data = load_data(write_tables({"customers": CUSTOMERS, "usage_events": usage}))
    got = _rows(data, "usage_events").set_index("customer_id")["timestamp"].to_dict()
    assert got == {
        "A": pd.Timestamp("2026-01-01 08:00"),
        "B": pd.Timestamp("2026-01-01 15:00"),
        "C": pd.Timestamp("2026-01-01 03:00"),
        "D": pd.Timestamp("2026-01-01 03:00"),
    }
    assert data.as_of == pd.Timestamp("2026-01-01 15:00")


def test_text_timestamps_parse_as_the_zoned_cast_does() -> None:
    """The fast path for zone-free text (strptime) reads every value as TIMESTAMPTZ does."""
    from features.checks import parse_sql
    from features.contract import TABLES

    values = [
        "2026-01-06 03:40:25", "2026-1-6 3:4:5", "2026-01-06  03:40:25", "2024-02-29 03:40:25",
        "2026-02-29 03:40:25", "2026-01-06 24:00:00", "2026-01-06 23:59:60", "0000-01-06 03:40:25",
        "2026-01-06 03:40:25+02", "2026-01-06 03:40:25 UTC", "2026-01-06 03:40:25 Europe/Paris",
        "2026-01-06 03:40:25 +02:00", "2026-01-06T03:40:25-0530", "2026-01-06 03:40:25.5Z",
        "2026-01-06 03:40:25.", "2026-01-06", "12026-01-06 03:40:25", "infinity", "ten",
    ]  # fmt: skip
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE t AS SELECT unnest(?::VARCHAR[]) AS ts", [values])
    parsed = parse_sql(TABLES["usage_events"].column("timestamp"), "ts", "VARCHAR")
    got = con.execute(
        f"SELECT ts, CAST({parsed} AS VARCHAR), "
        "CAST(CAST(TRY_CAST(ts AS TIMESTAMPTZ) AS TIMESTAMP) AS VARCHAR) FROM t"
    ).fetchall()
    assert [(v, zoned) for v, _, zoned in got] == [(v, fast) for v, fast, _ in got]


def test_as_of_defaults_to_the_latest_timestamp(write_tables) -> None:
    tickets = [{"customer_id": "C", "opened_at": "2026-03-05 12:00:00"}]
    folder = write_tables(
        {"customers": CUSTOMERS, "usage_events": USAGE, "support_tickets": tickets}
    )
    data = load_data(folder)
    assert data.as_of == pd.Timestamp("2026-03-05 12:00")
    assert data.quality["as_of"] == "2026-03-05 12:00:00"
    assert all(info.get("rows_after_as_of", 0) == 0 for info in data.quality["tables"].values())


def test_events_after_an_explicit_as_of_are_counted_and_left_out(write_tables) -> None:
    usage = [*USAGE, {"customer_id": "C", "timestamp": "2026-04-01", "feature": "x"}]
    folder = write_tables({"customers": CUSTOMERS, "usage_events": usage})
    data = load_data(folder, as_of="2026-03-01 12:00")
    info = data.quality["tables"]["usage_events"]
    assert data.as_of == pd.Timestamp("2026-03-01 12:00")
    assert info["rows_after_as_of"] == 2
    assert info["rows_used"] == 1
    assert info["last"] == "2026-04-01 00:00:00"  # the summary still shows the whole file
    assert _rows(data, "usage_events")["customer_id"].tolist() == ["A"]


def test_as_of_that_is_not_a_date_errors(write_tables) -> None:
    folder = write_tables({"customers": CUSTOMERS, "usage_events": USAGE})
    assert "as_of 'last tuesday'" in _error(folder, as_of="last tuesday")


def test_as_of_with_offset_is_converted_to_utc(write_tables) -> None:
    folder = write_tables({"customers": CUSTOMERS, "usage_events": USAGE})
    assert load_data(folder, as_of="2026-03-02T10:00:00+02:00").as_of == pd.Timestamp(
        "2026-03-02 08:00"
    )
    # B's event at 08:30 UTC is after that, though before 10:00 wall-clock time.
    data = load_data(folder, as_of="2026-03-02T10:00:00+02:00")
    assert data.quality["tables"]["usage_events"]["rows_after_as_of"] == 1


def test_plain_date_as_of_means_the_end_of_that_day(write_tables) -> None:
    usage = [
        {"customer_id": "A", "timestamp": "2026-03-01 00:00:00", "feature": "x"},
        {"customer_id": "B", "timestamp": "2026-03-01 23:59:59", "feature": "x"},
        {"customer_id": "C", "timestamp": "2026-03-02 00:00:00", "feature": "x"},
    ]
    folder = write_tables({"customers": CUSTOMERS, "usage_events": usage})
    data = load_data(folder, as_of="2026-03-01")
    assert data.as_of == pd.Timestamp("2026-03-01 23:59:59.999999")
    assert sorted(_rows(data, "usage_events")["customer_id"]) == ["A", "B"]
    assert data.quality["tables"]["usage_events"]["rows_after_as_of"] == 1
    # A time, even midnight, is taken as it is.
    midnight = load_data(folder, as_of="2026-03-01 00:00")
    assert midnight.as_of == pd.Timestamp("2026-03-01")
    assert _rows(midnight, "usage_events")["customer_id"].tolist() == ["A"]
    # Features count back from the end of the day: B's event is a second old.
    table = build_features(data, PARAMS)
    assert table.frame.loc["B", "usage_recency_days"] == pytest.approx(1 / 86400, abs=1e-9)
    assert table.frame.loc["A", "usage_active_days"] == 1


def test_unknown_customers_do_not_move_as_of_or_the_span(write_tables) -> None:
    usage = [
        {"customer_id": c, "timestamp": f"2026-03-{d:02d}", "feature": "x"}
        for d, c in enumerate(["A"] * 30, start=1)
    ]
    usage += [
        {"customer_id": "Z", "timestamp": "2027-01-01", "feature": "x"},
        {"customer_id": "Z", "timestamp": "2020-01-01", "feature": "x"},
    ]
    folder = write_tables({"customers": CUSTOMERS, "usage_events": usage})
    data = load_data(folder, validation={"max_unknown_share": 0.1})
    assert data.as_of == pd.Timestamp("2026-03-30")
    info = data.quality["tables"]["usage_events"]
    assert (info["first"], info["last"]) == ("2026-03-01 00:00:00", "2026-03-30 00:00:00")
    assert info["unknown_customer_rows"] == 2 and info["rows_after_as_of"] == 0
    # B never used the product: its recency is the span of the known data, 29 days.
    table = build_features(data, PARAMS)
    assert table.frame.loc["B", "usage_recency_days"] == pytest.approx(29)


# ---------------------------------------------------------------- file formats


def test_bom_is_tolerated(write_tables) -> None:
    folder = write_tables({"customers": CUSTOMERS, "usage_events": USAGE})
    for name in ("customers.csv", "usage_events.csv"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    data = load_data(folder)
    assert data.columns["customers"] == ["customer_id"]
    assert data.columns["usage_events"] == ["customer_id", "timestamp", "feature"]
    assert data.n_customers == 4


MIXED = {
    "customers": records(
        "customer_id signup_date region seats",
        ("A", "2025-01-10", "EU", "10"),
        ("B", "2025-06-01", "US", "3"),
        ("C", "2024-11-30", "EU", "40"),
    ),
    "transactions": records(
        "customer_id timestamp amount discount",
        ("A", "2026-01-05 09:00:00", "100", "10"),
        ("A", "2026-02-05 09:00:00", "-25", ""),
        ("B", "2025-12-20 17:45:00", "60", "0"),
    ),
    "usage_events": records(
        "customer_id timestamp feature quantity",
        ("A", "2026-02-01 10:00:00", "reports", "3"),
        ("B", "2026-02-20 11:00:00", "export", ""),
        ("B", "2026-03-01 12:00:00", "reports", "1"),
    ),
    "feedback": records(
        "customer_id timestamp nps csat comment",
        ("A", "2026-01-10", "10", "5", "great"),
        ("C", "2026-02-10", "4", "", ""),
    ),
    "support_tickets": records(
        "customer_id opened_at closed_at priority",
        ("C", "2026-02-01 08:00:00", "2026-02-03 20:00:00", "urgent"),
        ("A", "2026-02-15 08:00:00", "", "low"),
    ),
}
TYPES = {
    "signup_date": "datetime", "timestamp": "datetime", "opened_at": "datetime",
    "closed_at": "datetime", "seats": "int", "amount": "float", "discount": "float",
    "quantity": "float", "nps": "float", "csat": "float",
}  # fmt: skip


def _typed(rows: list[dict]) -> pd.DataFrame:
    """The rows with proper dtypes, as a Parquet or database export would have them."""
    frame = pd.DataFrame(rows).replace("", None)
    for col, kind in TYPES.items():
        if col in frame:
            if kind == "datetime":
                frame[col] = pd.to_datetime(frame[col])
            else:
                frame[col] = pd.to_numeric(frame[col]).astype("int64" if kind == "int" else float)
    return frame


def _features(source: Path):
    data = load_data(source, privacy=PRIVACY)
    return data, build_features(data, PARAMS).frame.sort_index()


def test_parquet_folder_gives_the_same_features_as_csv(write_tables, tmp_path: Path) -> None:
    _, expected = _features(write_tables(MIXED))
    folder = tmp_path / "parquet"
    folder.mkdir()
    for name, rows in MIXED.items():
        _typed(rows).to_parquet(folder / f"{name}.parquet")
    data, got = _features(folder)
    assert data.quality["tables"]["usage_events"]["file"] == str(folder / "usage_events.parquet")
    assert data.as_of == pd.Timestamp("2026-03-01 12:00")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_duckdb_file_gives_the_same_features_as_csv(write_tables, tmp_path: Path) -> None:
    _, expected = _features(write_tables(MIXED))
    path = tmp_path / "export.duckdb"
    with duckdb.connect(str(path)) as con:
        for name, rows in MIXED.items():
            con.register("export", _typed(rows))
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM export")
            con.unregister("export")
        con.execute("CREATE TABLE unrelated AS SELECT 1 AS x")
    data, got = _features(path)
    assert data.tables == list(MIXED)
    assert data.quality["tables"]["feedback"]["file"] == f"{path} (table feedback)"
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_duckdb_file_errors_name_the_table(tmp_path: Path) -> None:
    path = tmp_path / "export.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE customers AS SELECT 'A' AS customer_id")
        con.execute(
            "CREATE TABLE feedback AS SELECT 'A' AS customer_id, "
            "TIMESTAMP '2026-01-01' AS timestamp, 11 AS nps"
        )
    message = _error(path)
    assert f"{path} (table feedback): column 'nps' must be a whole number" in message
    assert "in 1 of 1 rows (e.g. '11')" in message


def test_csv_typed_by_the_reader_gives_what_its_text_gives(write_tables, monkeypatch) -> None:
    """DuckDB's CSV reader types a table's timestamps and numbers when it can; same result.

    ``usage_events`` (times with a fraction of a second) and ``transactions`` are written
    as the reader parses them (a ``NaN`` quantity is no value either way); feedback's
    dates, and a ticket opened at a time with a zone offset, are not: those tables are
    parsed from their text, the offset applied.
    """
    from features import loading

    usage = MIXED["usage_events"] + records(
        "customer_id timestamp feature quantity", ("C", "2026-02-22 09:30:00", "alerts", "NaN")
    )
    tables = {
        **MIXED,
        "usage_events": [{**r, "timestamp": r["timestamp"] + ".125"} for r in usage],
        "support_tickets": MIXED["support_tickets"] + records(
            "customer_id opened_at closed_at priority",
            ("C", "2026-02-25 10:00:00+02:00", "", "low"),
        ),
    }  # fmt: skip
    folder = write_tables(tables)
    typed = {}
    held_typed = loading._held_typed

    def spy(con, name, *args):
        typed[name] = held_typed(con, name, *args)
        return typed[name]

    monkeypatch.setattr(loading, "_held_typed", spy)
    data, got = _features(folder)
    assert typed == {
        "usage_events": True, "transactions": True, "feedback": False, "support_tickets": False,
    }  # fmt: skip
    assert data.quality["tables"]["support_tickets"]["last"] == "2026-02-25 08:00:00"
    assert got.loc["C", "usage_events"] == 1  # the NaN quantity counts as one use
    monkeypatch.setattr(loading, "_held_typed", lambda *args: False)  # every table as text
    text, expected = _features(folder)
    pd.testing.assert_frame_equal(got, expected)
    assert data.quality == text.quality


PLAIN, FRACTION = "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"


@pytest.mark.parametrize(
    "fraction, appended, expected, last",
    [
        ("", "C,2026-02-25 10:00:00,reports,2", PLAIN, PLAIN),
        (".5", "C,2026-02-25 10:00:00.25,reports,2", FRACTION, FRACTION),
        ("", "C,2026-02-25 10:00:00.25,reports,2", None, FRACTION),  # one format per file
        ("", "C,2026-02-25T10:00:00Z,reports,2", None, None),  # another tool's way with times
        ("", "C,2026-02-25 10:00:00,reports,NA", None, None),
        ("", "C,,reports,", PLAIN, PLAIN),  # empty values are no values either way
        ("", 'C,2026-02-25 10:00:00,"multi\nline",2', PLAIN, PLAIN),  # split rows are skipped
    ],
)
def test_the_last_rows_say_how_to_read_a_csv_typed(tmp_path, fraction, appended, expected, last):
    """The time format of a CSV file's last rows, if the typed reader would read them.

    ``last``: what the last row alone says (a 64-byte look starts inside a row).
    """
    from features.reading import typed_tail_format

    path = tmp_path / "usage_events.csv"
    rows = "".join(f"A,2026-01-{d:02d} 09:00:00{fraction},export,{d}\n" for d in range(1, 29))
    path.write_text("customer_id,timestamp,feature,quantity\n" + rows + appended + "\n")
    types = {"timestamp": "TIMESTAMP", "quantity": "DOUBLE"}
    assert typed_tail_format(path, types) == expected
    assert typed_tail_format(path, types, probe=64) == last


def test_parquet_zoned_timestamps_are_converted_to_utc(tmp_path: Path) -> None:
    pd.DataFrame({"customer_id": ["A"]}).to_parquet(tmp_path / "customers.parquet")
    when = pd.Timestamp("2026-01-01 10:00", tz="Europe/Berlin")
    pd.DataFrame({"customer_id": ["A"], "timestamp": [when], "feature": ["x"]}).to_parquet(
        tmp_path / "usage_events.parquet"
    )
    data = load_data(tmp_path)
    assert _rows(data, "usage_events")["timestamp"].tolist() == [pd.Timestamp("2026-01-01 09:00")]


def test_integer_ids_in_parquet_match_text_ids_in_csv(write_tables) -> None:
    folder = write_tables({"usage_events": [{"customer_id": "7", "timestamp": "2026-01-01",
                                             "feature": "x"}]})  # fmt: skip
    pd.DataFrame({"customer_id": [7, 8]}).to_parquet(folder / "customers.parquet")
    data = load_data(folder)
    assert data.quality["tables"]["usage_events"]["unknown_customer_rows"] == 0
    assert _rows(data, "usage_events")["customer_id"].tolist() == ["7"]


@pytest.mark.parametrize(
    "ids, features",
    [
        (["A", "B", "Z", "A"], ["reports", "export", "x", "api"]),  # tidy, one unknown id
        ([" A", "B ", "Z", None], ["reports", " export", "", "api"]),  # trimmed, empty, missing
        (["A", "B", "C", "D"], ["reports", "export", "x", "api"]),  # every id known
    ],
)
def test_parquet_ids_and_texts_are_checked_as_csv_checks_them(
    write_tables, tmp_path: Path, ids: list, features: list
) -> None:
    """A typed file's distinct ids and texts are checked once (`features.checks.tidy_columns`,
    `unknown_ids`), a text file's every row: the same rows pass, fail and are left out."""
    usage = [
        {"customer_id": c, "timestamp": f"2026-03-0{i + 1}", "feature": f, "quantity": "1"}
        for i, (c, f) in enumerate(zip(ids, features, strict=True))
    ]
    tables = {"customers": CUSTOMERS, "usage_events": usage}
    folder = tmp_path / "parquet"
    folder.mkdir()
    for name, rows in tables.items():
        _typed(rows).to_parquet(folder / f"{name}.parquet")
    quarantine = {"on_error": "quarantine", "max_unknown_share": 0.5}
    expected = load_data(write_tables(tables), validation=quarantine)
    got = load_data(folder, validation=quarantine)
    keys = ("rows", "rows_invalid", "invalid", "unknown_customer_rows", "unknown_customer_ids",
            "rows_used", "first", "last")  # fmt: skip
    want = {k: expected.quality["tables"]["usage_events"].get(k) for k in keys}
    assert {k: got.quality["tables"]["usage_events"].get(k) for k in keys} == want
    pd.testing.assert_frame_equal(_rows(got, "usage_events"), _rows(expected, "usage_events"))


def test_integer_ids_in_parquet_are_checked_as_csv_checks_them(write_tables, tmp_path) -> None:
    """Integer ids are read plainly (no trimming of each event's id): the same rows pass."""
    customers = [{"customer_id": str(c)} for c in (1, 2, 3, 4)]
    usage = [
        {"customer_id": c, "timestamp": f"2026-03-0{i + 1}", "feature": "x", "quantity": "1"}
        for i, c in enumerate(["1", "2", "9", "", "1"])
    ]
    tables = {"customers": customers, "usage_events": usage}
    folder = tmp_path / "parquet"
    folder.mkdir()
    for name, rows in tables.items():
        frame = _typed(rows)
        frame["customer_id"] = pd.array(frame["customer_id"], dtype="Int64")
        frame.to_parquet(folder / f"{name}.parquet")
    quarantine = {"on_error": "quarantine", "max_unknown_share": 0.5}
    expected = load_data(write_tables(tables), validation=quarantine)
    got = load_data(folder, validation=quarantine)
    info = got.quality["tables"]["usage_events"]
    assert (info["rows_invalid"], info["unknown_customer_rows"], info["rows_used"]) == (1, 1, 3)
    for key in ("rows", "invalid", "unknown_customer_ids", "first", "last"):
        assert info[key] == expected.quality["tables"]["usage_events"][key]
    pd.testing.assert_frame_equal(_rows(got, "usage_events"), _rows(expected, "usage_events"))


def test_fingerprint_follows_the_content(write_tables) -> None:
    folder = write_tables({"customers": CUSTOMERS, "usage_events": USAGE})
    first = load_data(folder).fingerprint
    assert load_data(folder).fingerprint == first
    write_tables({"usage_events": [*USAGE, USAGE[0]]})
    assert load_data(folder).fingerprint != first


# ---------------------------------------------------------------- personal data


def test_personal_data_columns_are_dropped_and_listed(write_tables) -> None:
    customers = [
        {"customer_id": c, "email": f"{c}@x.io", "name": c * 3, "phone": "555", "firstName": c,
         "secret_code": "s", "favourite_colour": "red", "region": "EU", "plan": "pro"}
        for c in ("A", "B")
    ]  # fmt: skip
    folder = write_tables({"customers": customers, "usage_events": USAGE})
    privacy = {
        "pii_patterns": [*PII_PATTERNS, "secret"],
        "pii_columns": ["Favourite_Colour"],
    }
    data = load_data(folder, privacy=privacy)
    dropped = ["email", "name", "phone", "firstName", "secret_code", "favourite_colour"]
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == dropped
    assert data.attributes == ["region", "plan"]
    assert data.columns["customers"] == ["customer_id", "region", "plan"]
    assert list(_rows(data, "customers").columns) == ["customer_id", "region", "plan"]


def test_default_patterns_drop_typical_personal_data(write_tables) -> None:
    names = ["customer_email", "contact_phone", "street_address", "home_zip", "ip",
             "date_of_birth", "mobile", "ssn", "passport_no", "lastName"]  # fmt: skip
    customers = [{"customer_id": "A", **{n: "x" for n in names}, "industry": "retail"}]
    folder = write_tables({"customers": customers, "usage_events": USAGE[:1]})
    data = load_data(folder, privacy=PRIVACY)
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == names
    assert data.attributes == ["industry"]


def test_contract_columns_are_never_treated_as_personal_data(write_tables) -> None:
    customers = [{"customer_id": "A", "account_id": "acc-1", "signup_date": "2025-01-01"}]
    folder = write_tables({"customers": customers, "usage_events": USAGE[:1]})
    data = load_data(folder, privacy=PRIVACY)
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == []
    assert data.columns["customers"] == ["customer_id", "signup_date", "account_id"]


def test_e_mail_column_is_personal_data(write_tables) -> None:
    customers = [{"customer_id": "A", "e_mail": "a@x.io"}]
    folder = write_tables({"customers": customers, "usage_events": USAGE[:1]})
    data = load_data(folder, privacy=PRIVACY)
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == ["e_mail"]
    assert data.attributes == []


@pytest.mark.parametrize(
    "column", ["E-Mail", "eMail", "work_e_mail", "firstname", "lastname", "fullname", "username"]
)
def test_run_together_and_split_names_are_personal_data(write_tables, column: str) -> None:
    customers = [{"customer_id": "A", column: "x", "plan": "pro"}]
    folder = write_tables({"customers": customers, "usage_events": USAGE[:1]})
    data = load_data(folder, privacy=PRIVACY)
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == [column]
    assert data.attributes == ["plan"]


def test_technical_names_are_not_personal_data(write_tables) -> None:
    names = ["filename", "hostname", "zipper", "tip_pct"]
    customers = [{"customer_id": "A", **{n: "x" for n in names}}]
    folder = write_tables({"customers": customers, "usage_events": USAGE[:1]})
    data = load_data(folder, privacy=PRIVACY)
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == []
    assert data.attributes == names


def test_default_privacy_patterns_apply_without_a_privacy_config(write_tables) -> None:
    customers = [{"customer_id": "A", "email": "a@x.io", "name": "Al", "region": "EU"}]
    folder = write_tables({"customers": customers, "usage_events": USAGE[:1]})
    data = load_data(folder)
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == ["email", "name"]
    assert data.attributes == ["region"]
    # Naming only extra columns keeps the default patterns too.
    data = load_data(folder, privacy={"pii_columns": ["region"]})
    assert data.quality["tables"]["customers"]["pii_columns_dropped"] == [
        "email", "name", "region",
    ]  # fmt: skip


def test_default_config_patterns_are_the_built_in_ones() -> None:
    # The config may leave the patterns out (or null) to use the built-in list.
    assert PRIVACY.get("pii_patterns") in (None, list(PII_PATTERNS))


@pytest.mark.parametrize("first, appended", [(b"\r\n", b"\n"), (b"\n", b"\r\n")])
def test_a_file_with_mixed_line_endings_places_every_customer(tmp_path, first, appended):
    folder = tmp_path / "data"
    folder.mkdir()
    customers = [b"customer_id,signup_date", b"A,2026-01-01", b"B,2026-01-02", b"C,2026-01-03"]
    (folder / "customers.csv").write_bytes(first.join(customers) + first)
    rows = [b"customer_id,timestamp,amount", b"A,2026-03-01,10", b"B,2026-03-02,12"]
    extra = [b"C,2026-03-05,3", b"A,2026-03-06,4"]  # appended by another tool
    (folder / "transactions.csv").write_bytes(
        first.join(rows) + first + appended.join(extra) + appended
    )
    data = load_data(folder)
    table = build_features(data, PARAMS)
    assert sorted(table.frame.index) == ["A", "B", "C"]
    assert table.frame["revenue_monetary"].to_dict() == {"A": 14.0, "B": 12.0, "C": 3.0}

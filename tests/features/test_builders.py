"""Tests for the feature builders (``features.build_features``) on hand-made data.

Every expected value below is computed by hand from ``TABLES``; the comments show the sums.
Reference time: ``AS_OF`` = 2026-03-31 00:00, so the 90-day window starts after 2025-12-31,
the last 30 days after 2026-03-01 and the 30 days before after 2026-01-30. The earliest
event is C1's transaction on 2025-03-31, so the data span is 365 days. ``AS_OF`` names the
time: a plain date (``2026-03-31``) would mean the end of that day.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import records, write_csv_tables

from features import DataError, FeatureTable, build_features, load_data
from pipelines.config import DEFAULT_CONFIG

CONF = yaml.safe_load(DEFAULT_CONFIG.read_text())
PARAMS = {**CONF["features"], "seed": CONF["seed"]}
PRIVACY = CONF["privacy"]
AS_OF = "2026-03-31 00:00"
SPAN = 365.0  # 2025-03-31 -> 2026-03-31

# Customers in a deliberately unsorted order; C4 has no events at all.
CUSTOMER_ORDER = ["C3", "C1", "C4", "C2"]

TABLES: dict[str, list[dict]] = {
    "customers": records(
        "customer_id signup_date email name region seats",
        ("C3", "2024-01-01", "c@x.io", "Cy", "EU", "5"),
        ("C1", "2025-03-01", "a@x.io", "Al", "EU", "10"),
        ("C4", "2026-03-01", "d@x.io", "Di", "APAC", "200"),
        ("C2", "2025-06-01", "b@x.io", "Bo", "US", "50"),
    ),
    "usage_events": records(
        "customer_id timestamp feature quantity",
        ("C1", "2026-03-30 10:00:00", "reports", "2"),
        ("C1", "2026-03-30 15:00:00", "export", "1"),
        ("C1", "2026-03-20", "reports", ""),
        ("C1", "2026-02-15", "dashboards", "3"),
        ("C1", "2025-11-01", "reports", "5"),
        ("C1", "2026-04-10", "reports", "100"),
        ("C2", "2026-01-10", "reports", "4"),
        ("C2", "2026-02-01", "reports", "2"),
        ("C3", "2025-10-01", "export", "1"),
    ),
    "engagement_events": records(
        "customer_id timestamp channel",
        ("C1", "2026-03-15", "email_open"),
        ("C1", "2026-03-16", "email_open"),
        ("C1", "2026-03-20", "webinar"),
        ("C1", "2025-12-01", "web_visit"),
        ("C2", "2025-11-15", "email_open"),
        ("C3", "2026-03-31 00:00:00", "web_visit"),
        ("C3", "2026-04-02", "email_click"),
    ),
    "transactions": records(
        "customer_id timestamp amount discount days_late",
        ("C1", "2025-03-31", "100", "0", "0"),
        ("C1", "2026-01-15", "200", "50", "10"),
        ("C1", "2026-02-01", "-50", "", ""),
        ("C1", "2026-04-05", "1000", "0", "0"),
        ("C2", "2026-03-01", "80", "20", "0"),
        ("C3", "2026-03-10", "-30", "", ""),
    ),
    # C1's latest answer (9) is deliberately not the last row of the file.
    "feedback": records(
        "customer_id timestamp nps csat comment",
        ("C1", "2026-03-01", "9", "4", ""),
        ("C1", "2026-01-10", "3", "2", "slow"),
        ("C1", "2026-04-01", "0", "1", "late"),
        ("C2", "2026-02-01", "7", "", ""),
        ("C3", "2026-03-05", "6", "5", "meh"),
    ),
    "support_tickets": records(
        "customer_id opened_at closed_at priority",
        ("C1", "2026-03-01", "2026-03-03 12:00:00", "High"),
        ("C1", "2026-03-20", "", "low"),
        ("C1", "2025-06-01", "2025-06-02", "urgent"),
        ("C1", "2026-03-25", "2026-04-05", "normal"),
        ("C2", "2026-02-10", "2026-02-11", "critical"),
        ("C3", "2025-05-01", "2025-05-03", ""),
    ),
}


def _build(folder: Path, params: dict | None = None, **load) -> FeatureTable:
    load = {"as_of": AS_OF, "privacy": PRIVACY, **load}
    return build_features(load_data(folder, **load), {**PARAMS, **(params or {})})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made tables as a CSV folder."""
    return write_csv_tables(tmp_path_factory.mktemp("hand"), TABLES)


@pytest.fixture(scope="module")
def table(folder: Path) -> FeatureTable:
    """Features of the hand-made tables at ``AS_OF``."""
    return _build(folder)


def _col(table: FeatureTable, name: str) -> dict:
    """One feature as {customer_id: value}, NaN/NA as None, for exact comparisons."""
    return {k: (None if pd.isna(v) else v) for k, v in table.frame[name].items()}


def _assert_values(table: FeatureTable, expected: dict[str, dict[str, float | str | None]]) -> None:
    for name, values in expected.items():
        got = _col(table, name)
        assert got.keys() == values.keys(), name
        for cid, want in values.items():
            if want is None or isinstance(want, str):
                assert got[cid] == want, (name, cid, got[cid])
            else:
                assert got[cid] == pytest.approx(want), (name, cid, got[cid])


# ---------------------------------------------------------------- frame shape and metadata


def test_one_row_per_customer_with_unique_columns(table: FeatureTable) -> None:
    assert list(table.frame.index) == sorted(CUSTOMER_ORDER)
    assert table.frame.index.is_unique
    assert table.frame.index.name == "customer_id"
    assert not table.frame.columns.duplicated().any()
    assert table.as_of == pd.Timestamp(AS_OF)


def test_rows_are_sorted_by_customer_id_whatever_the_file_order(write_tables) -> None:
    ids = [f"K{(i * 37) % 101:03d}" for i in range(60)]  # unsorted, no ties
    folder = write_tables(
        {
            "customers": [{"customer_id": c} for c in ids],
            "usage_events": [{"customer_id": ids[0], "timestamp": "2026-03-01", "feature": "x"}],
        }
    )
    assert list(_build(folder).frame.index) == sorted(ids)


def test_metadata_describes_every_column(table: FeatureTable) -> None:
    meta = table.meta
    assert list(meta.index) == list(table.frame.columns)
    for name, row in meta.iterrows():
        assert row["description"].strip(), name
        assert row["unit"].strip(), name
        assert row["lens"] in {"value", "needs"}, name
        assert row["transform"] in {"log", "none", "category"}, name
        assert row["fill"] in {"zero", "span", "nan"}, name
    assert set(meta["family"]) == {
        "usage", "usage_mix", "engagement", "revenue", "rfm", "feedback", "support", "attributes",
    }  # fmt: skip
    assert meta.loc["revenue_monetary", "lens"] == "value"
    assert meta.loc["usage_events", "lens"] == "needs"
    assert meta.loc["usage_recency_days", "fill"] == "span"
    assert meta.loc["revenue_avg_order", "fill"] == "nan"


def test_families_lists_feature_names(table: FeatureTable) -> None:
    assert table.families(["support"]) == [
        "support_tickets", "support_close_days", "support_open", "support_high_priority_share",
    ]  # fmt: skip


# ---------------------------------------------------------------- families


def test_usage(table: FeatureTable) -> None:
    _assert_values(
        table,
        {
            # C1: 2 + 1 + 1 (empty quantity counts 1) + 3; the 2025-11-01 event is outside
            # the window and the 2026-04-10 one is after as_of. C2: 4 + 2.
            "usage_events": {"C1": 7, "C2": 6, "C3": 0, "C4": 0},
            "usage_active_days": {"C1": 3, "C2": 2, "C3": 0, "C4": 0},
            "usage_breadth": {"C1": 3, "C2": 1, "C3": 0, "C4": 0},
            # C1 last used 2026-03-30 15:00 (9 h = 0.375 d); C2 2026-02-01; C3 2025-10-01.
            "usage_recency_days": {"C1": 0.375, "C2": 58, "C3": 181, "C4": SPAN},
            # C1: last 30 days 4, the 30 before 3 -> 1/7. C2: 0 vs 2 -> -1.
            "usage_trend": {"C1": 1 / 7, "C2": -1, "C3": 0, "C4": 0},
        },
    )


def test_usage_mix_shares(table: FeatureTable) -> None:
    mix = [c for c in table.frame.columns if c.startswith("mix_")]
    assert mix == ["mix_dashboards", "mix_export", "mix_reports"]
    _assert_values(
        table,
        {
            "mix_dashboards": {"C1": 3 / 7, "C2": 0, "C3": 0, "C4": 0},
            "mix_export": {"C1": 1 / 7, "C2": 0, "C3": 0, "C4": 0},
            "mix_reports": {"C1": 3 / 7, "C2": 1, "C3": 0, "C4": 0},
        },
    )
    assert table.meta.loc["mix_reports", "label"] == "reports"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_usage_mix_columns_are_the_features_used_in_the_window(write_tables, kind) -> None:
    """Only product features with usage in the window (if only of quantity 0) are columns.

    The scan pivots over the column's distinct spellings, which may hold more; each extra
    one here would be an all-zero ``mix_`` column.
    """
    extra = records(
        "customer_id timestamp feature quantity",
        ("C2", "2025-09-01", "legacy", "3"),  # before the window only
        ("C3", "2026-03-15", "beta", "0"),  # in it, with quantity 0: a column
        ("C9", "2026-03-15", "ghost", "2"),  # an unknown customer's only
        ("C1", "2026-04-20", "later", "1"),  # after as_of only
    )
    tables = {**TABLES, "usage_events": TABLES["usage_events"] + extra}
    folder = write_tables(tables)
    if kind == "parquet":  # typed columns: the spellings come from the file's dictionaries
        for name in tables:
            frame = pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
            frame = frame.replace("", None)
            for col in frame.columns.intersection(["timestamp", "opened_at", "closed_at"]):
                frame[col] = pd.to_datetime(frame[col], format="ISO8601")
            for col in frame.columns.intersection(["quantity", "amount", "nps", "csat"]):
                frame[col] = pd.to_numeric(frame[col])
            frame.to_parquet(folder / f"{name}.parquet")
            (folder / f"{name}.csv").unlink()
    got = _build(folder, validation={"max_unknown_share": 0.5})
    mix = [c for c in got.frame.columns if c.startswith("mix_")]
    assert mix == ["mix_beta", "mix_dashboards", "mix_export", "mix_reports"]
    _assert_values(
        got,
        {
            "mix_beta": {"C1": 0, "C2": 0, "C3": 0, "C4": 0},
            "mix_dashboards": {"C1": 3 / 7, "C2": 0, "C3": 0, "C4": 0},
            "mix_export": {"C1": 1 / 7, "C2": 0, "C3": 0, "C4": 0},
            "mix_reports": {"C1": 3 / 7, "C2": 1, "C3": 0, "C4": 0},
            "usage_breadth": {"C1": 3, "C2": 1, "C3": 1, "C4": 0},
        },
    )


def test_engagement(table: FeatureTable) -> None:
    channels = [
        c for c in table.families(["engagement"]) if c not in {
            "engagement_events", "engagement_recency_days", "engagement_silent",
        }
    ]  # fmt: skip
    # Most frequent first; email_click happened only after as_of, so it is not a channel.
    assert channels == ["engagement_email_open", "engagement_web_visit", "engagement_webinar"]
    _assert_values(
        table,
        {
            "engagement_events": {"C1": 3, "C2": 0, "C3": 1, "C4": 0},
            "engagement_email_open": {"C1": 2, "C2": 0, "C3": 0, "C4": 0},
            "engagement_web_visit": {"C1": 0, "C2": 0, "C3": 1, "C4": 0},
            "engagement_webinar": {"C1": 1, "C2": 0, "C3": 0, "C4": 0},
            # C3's visit at exactly as_of counts (0 days); C2 last touched 2025-11-15.
            "engagement_recency_days": {"C1": 11, "C2": 136, "C3": 0, "C4": SPAN},
            "engagement_silent": {"C1": 0, "C2": 1, "C3": 0, "C4": 1},
        },
    )


def test_revenue(table: FeatureTable) -> None:
    _assert_values(
        table,
        {
            # C1: 100 + 200 - 50 (refund); the 1000 on 2026-04-05 is after as_of.
            "revenue_monetary": {"C1": 250, "C2": 80, "C3": -30, "C4": 0},
            # The 100 on 2025-03-31 is exactly 365 days old: outside the 12 months.
            "revenue_12m": {"C1": 150, "C2": 80, "C3": -30, "C4": 0},
            "revenue_frequency": {"C1": 2, "C2": 1, "C3": 0, "C4": 0},
            "revenue_avg_order": {"C1": 150, "C2": 80, "C3": None, "C4": None},
            # Last purchase (refunds do not count): C1 2026-01-15, C2 2026-03-01; C3 never.
            "revenue_recency_days": {"C1": 75, "C2": 30, "C3": SPAN, "C4": SPAN},
            "revenue_refunds": {"C1": 1, "C2": 0, "C3": 1, "C4": 0},
            # Discount over list price of purchases: C1 50 / (100 + 250), C2 20 / 100.
            "revenue_discount_share": {"C1": 1 / 7, "C2": 0.2, "C3": None, "C4": None},
            # Mean of the known values: C1 (0 + 10) / 2.
            "revenue_days_late": {"C1": 5, "C2": 0, "C3": None, "C4": None},
        },
    )


def test_feedback(table: FeatureTable) -> None:
    _assert_values(
        table,
        {
            # C1's latest answer before as_of is 9 (2026-03-01), not 3 and not the 0 after it.
            "nps_latest": {"C1": 9, "C2": 7, "C3": 6, "C4": None},
            "nps_category": {"C1": "promoter", "C2": "passive", "C3": "detractor", "C4": None},
            "feedback_responses": {"C1": 2, "C2": 1, "C3": 1, "C4": 0},
            "csat_mean": {"C1": 3, "C2": None, "C3": 5, "C4": None},
            "feedback_comments": {"C1": 0.5, "C2": 0, "C3": 1, "C4": None},
        },
    )


def test_support(table: FeatureTable) -> None:
    _assert_values(
        table,
        {
            # C1: three tickets since 2025-12-31; the 2025-06-01 one is older.
            "support_tickets": {"C1": 3, "C2": 1, "C3": 0, "C4": 0},
            # Closed by as_of: C1 2.5 and 1 days; the one closed 2026-04-05 is still open.
            "support_close_days": {"C1": 1.75, "C2": 1, "C3": 2, "C4": None},
            "support_open": {"C1": 2, "C2": 0, "C3": 0, "C4": 0},
            # Of C1's window tickets only "High" (case-insensitive) is urgent.
            "support_high_priority_share": {"C1": 1 / 3, "C2": 1, "C3": None, "C4": None},
        },
    )


def test_attributes(table: FeatureTable) -> None:
    attrs = table.families(["attributes"])
    assert attrs == ["attr_region", "attr_seats"]
    _assert_values(
        table,
        {
            "attr_region": {"C1": "EU", "C2": "US", "C3": "EU", "C4": "APAC"},
            "attr_seats": {"C1": 10, "C2": 50, "C3": 5, "C4": 200},
        },
    )
    assert table.meta.loc["attr_region", "transform"] == "category"
    assert table.meta.loc["attr_seats", "transform"] == "none"
    assert pd.api.types.is_numeric_dtype(table.frame["attr_seats"])


def test_personal_data_never_becomes_a_feature(table: FeatureTable) -> None:
    assert not {"attr_email", "attr_name"} & set(table.frame.columns)
    attrs = table.meta[table.meta["family"] == "attributes"]["description"]
    assert list(attrs) == ["region (customer attribute)", "seats (customer attribute)"]
    values = table.frame.astype("string").to_numpy().ravel().tolist()
    assert not {"a@x.io", "Al", "Cy"} & set(values)


def test_rare_categories_are_grouped_as_other(write_tables) -> None:
    regions = ["EU"] * 5 + ["US"] * 3 + ["APAC", "LATAM"]
    folder = write_tables(
        {
            "customers": [{"customer_id": f"K{i}", "region": r} for i, r in enumerate(regions)],
            "usage_events": [{"customer_id": "K0", "timestamp": "2026-03-01", "feature": "x"}],
        }
    )
    t = _build(folder, {"max_categories": 2})
    expected = dict(enumerate(["EU"] * 5 + ["US"] * 3 + ["other", "other"]))
    assert _col(t, "attr_region") == {f"K{i}": r for i, r in expected.items()}


def test_identifier_like_attribute_is_not_used(write_tables) -> None:
    folder = write_tables(
        {
            "customers": [
                {"customer_id": f"K{i}", "crm_key": f"X-{i}", "plan": "pro" if i % 2 else "basic"}
                for i in range(30)
            ],
            "usage_events": [{"customer_id": "K0", "timestamp": "2026-03-01", "feature": "x"}],
        }
    )
    t = _build(folder)
    assert t.families(["attributes"]) == ["attr_plan"]


def test_attributes_named_alike_give_one_column(write_tables) -> None:
    folder = write_tables(
        {
            "customers": [
                {"customer_id": "A", "home region": "EU", "home_region": "US"},
                {"customer_id": "B", "home region": "US", "home_region": "US"},
            ],
            "usage_events": [{"customer_id": "A", "timestamp": "2026-03-01", "feature": "x"}],
        }
    )
    t = _build(folder)
    assert t.families(["attributes"]) == ["attr_home_region"]
    assert _col(t, "attr_home_region") == {"A": "EU", "B": "US"}  # the first column wins


def test_tenure_days_from_signup_date(table: FeatureTable) -> None:
    # as_of 2026-03-31 minus signup_date.
    assert _col(table, "tenure_days") == {"C1": 395, "C2": 303, "C3": 820, "C4": 30}
    meta = table.meta.loc["tenure_days"]
    assert (meta["family"], meta["lens"], meta["transform"], meta["fill"], meta["label"]) == (
        "revenue", "value", "log", "nan", "tenure",
    )  # fmt: skip


def test_tenure_falls_back_to_the_first_transaction_and_is_never_negative(write_tables) -> None:
    folder = write_tables(
        {
            "customers": records(
                "customer_id signup_date",
                ("A", "2026-01-01"),  # signed up after its first transaction: signup wins
                ("B", ""),  # no signup date: first transaction
                ("C", "2026-05-01"),  # signs up after as_of: 0
                ("D", ""),  # neither: unknown
            ),
            "transactions": records(
                "customer_id timestamp amount",
                ("A", "2025-12-01", "10"),
                ("B", "2026-03-21", "-5"),  # a refund still marks the start
                ("B", "2026-03-25", "10"),
            ),
        }
    )
    assert _col(_build(folder), "tenure_days") == {"A": 89, "B": 10, "C": 0, "D": None}


def test_tenure_without_transactions_is_an_attribute(write_tables) -> None:
    folder = write_tables(
        {
            "customers": records("customer_id signup_date", ("A", "2026-03-01"), ("B", "")),
            "usage_events": [{"customer_id": "A", "timestamp": "2026-03-01", "feature": "x"}],
        }
    )
    t = _build(folder)
    assert t.families(["attributes"]) == ["tenure_days"]
    assert _col(t, "tenure_days") == {"A": 30, "B": None}


# ---------------------------------------------------------------- no events, after as_of


def test_customer_without_events_gets_zero_counts_and_span_recency(table: FeatureTable) -> None:
    row = table.frame.loc["C4"]
    assert row["engagement_silent"] == 1
    assert row["tenure_days"] == 30  # from the signup date, not from events
    for f in table.features:
        if f.family == "attributes" or f.name in ("engagement_silent", "tenure_days"):
            continue
        value = row[f.name]
        if f.name == "value_tier":  # never bought: its own tier, not missing
            assert value == "none"
            continue
        if f.fill == "zero":
            assert value == 0, f.name
        elif f.fill == "span":
            assert value == pytest.approx(SPAN), f.name
        else:
            assert pd.isna(value), f.name


def test_events_after_as_of_are_ignored(folder: Path, tmp_path: Path) -> None:
    """Dropping every event after as_of from the files changes no feature."""
    cut = pd.Timestamp(AS_OF)
    trimmed = {}
    for name, rows in TABLES.items():
        key = "opened_at" if name == "support_tickets" else "timestamp"
        trimmed[name] = [r for r in rows if key not in r or pd.Timestamp(r[key]) <= cut]
    assert sum(map(len, trimmed.values())) < sum(map(len, TABLES.values()))
    expected = _build(folder).frame.sort_index()
    got = _build(write_csv_tables(tmp_path / "trimmed", trimmed)).frame.sort_index()
    pd.testing.assert_frame_equal(got, expected)


def test_earlier_as_of_back_tests(folder: Path) -> None:
    """A past as_of sees only what was known then (recency counts back from it)."""
    t = _build(folder, as_of="2026-02-01 00:00")
    _assert_values(
        t,
        {
            "revenue_monetary": {"C1": 250, "C2": 0, "C3": 0, "C4": 0},
            "nps_latest": {"C1": 3, "C2": 7, "C3": None, "C4": None},
            "usage_recency_days": {"C1": 92, "C2": 0, "C3": 123, "C4": 307},
        },
    )


def test_default_as_of_is_latest_timestamp(folder: Path) -> None:
    t = build_features(load_data(folder, privacy=PRIVACY), PARAMS)
    assert t.as_of == pd.Timestamp("2026-04-10")
    assert _col(t, "usage_recency_days")["C1"] == 0


def test_latest_nps_tie_takes_the_lowest_score(write_tables) -> None:
    folder = write_tables(
        {
            "customers": [{"customer_id": "A"}],
            "feedback": [
                {"customer_id": "A", "timestamp": "2026-01-01", "nps": "10"},
                {"customer_id": "A", "timestamp": "2026-01-01", "nps": "4"},
            ],
        }
    )
    t = _build(folder)
    assert _col(t, "nps_latest") == {"A": 4}
    assert _col(t, "nps_category") == {"A": "detractor"}
    assert "csat_mean" not in t.frame


# ---------------------------------------------------------------- families on and off


def test_absent_table_turns_its_family_off(folder: Path, tmp_path: Path) -> None:
    only = {k: TABLES[k] for k in ("customers", "transactions")}
    t = _build(write_csv_tables(tmp_path / "only", only))
    assert set(t.meta["family"]) == {"revenue", "rfm", "attributes"}
    assert t.frame.loc["C1", "revenue_monetary"] == 250
    # The span now comes from the transactions alone, which still start on 2025-03-31.
    assert t.frame.loc["C4", "revenue_recency_days"] == pytest.approx(SPAN)


def test_optional_columns_absent_leave_their_features_out(tmp_path: Path) -> None:
    tables = {
        "customers": [{"customer_id": c} for c in ("C1", "C2")],
        "transactions": [
            {k: v for k, v in r.items() if k in ("customer_id", "timestamp", "amount")}
            for r in TABLES["transactions"]
            if r["customer_id"] in ("C1", "C2")
        ],
        "support_tickets": [
            {"customer_id": "C1", "opened_at": "2026-03-01"},
            {"customer_id": "C2", "opened_at": "2025-03-31"},
        ],
    }
    t = _build(write_csv_tables(tmp_path / "lean", tables))
    assert list(t.frame.columns) == [
        "revenue_monetary", "revenue_12m", "revenue_frequency", "revenue_avg_order",
        "revenue_recency_days", "revenue_refunds", "tenure_days",
        "rfm_r", "rfm_f", "rfm_m", "value_tier", "support_tickets",
    ]  # fmt: skip
    assert _col(t, "support_tickets") == {"C1": 1, "C2": 0}
    # No signup dates: tenure counts from the first transaction.
    assert _col(t, "tenure_days") == {"C1": 365, "C2": 30}


REQUIRED = [
    ("customers", "customer_id"),
    ("transactions", "amount"),
    ("usage_events", "feature"),
    ("engagement_events", "channel"),
    ("feedback", "timestamp"),
    ("support_tickets", "opened_at"),
]


@pytest.mark.parametrize(("name", "column"), REQUIRED)
def test_table_missing_a_required_column_names_file_and_column(
    tmp_path: Path, name: str, column: str
) -> None:
    broken = {**TABLES, name: [{k: v for k, v in r.items() if k != column} for r in TABLES[name]]}
    with pytest.raises(DataError) as err:
        load_data(write_csv_tables(tmp_path / "broken", broken), as_of=AS_OF, privacy=PRIVACY)
    message = str(err.value)
    assert f"{name}.csv" in message
    assert repr(column) in message


def test_feedback_without_nps_or_csat_is_rejected(tmp_path: Path) -> None:
    feedback = [
        {k: v for k, v in r.items() if k not in ("nps", "csat")} for r in TABLES["feedback"]
    ]
    broken = {**TABLES, "feedback": feedback}
    with pytest.raises(DataError, match=r"feedback\.csv needs at least one of the columns nps"):
        load_data(write_csv_tables(tmp_path / "broken", broken), as_of=AS_OF, privacy=PRIVACY)


# ---------------------------------------------------------------- usage themes (NMF)

PRODUCT_FEATURES = ["alerts", "api", "dashboards", "export", "reports", "sharing"]


def _usage_rows() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        # Two kinds of users: analysts (dashboards, reports, export) and builders (api, ...).
        liked = PRODUCT_FEATURES[2:5] if i % 2 else PRODUCT_FEATURES[:2] + PRODUCT_FEATURES[5:]
        for day in range(1, 11):
            feature = liked[int(rng.integers(len(liked)))]
            rows.append(
                {"customer_id": f"U{i:02d}", "timestamp": f"2026-03-{day:02d}",
                 "feature": feature, "quantity": str(1 + int(rng.integers(3)))}
            )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def themes(tmp_path_factory: pytest.TempPathFactory) -> FeatureTable:
    tables = {
        "customers": [{"customer_id": f"U{i:02d}"} for i in range(13)],  # U12 never uses
        "usage_events": _usage_rows(),
    }
    folder = write_csv_tables(tmp_path_factory.mktemp("themes"), tables)
    return _build(folder, {"mix_max_features": 3, "mix_themes": 2})


def test_many_product_features_are_reduced_to_themes(themes: FeatureTable) -> None:
    mix = themes.families(["usage_mix"])
    assert len(mix) == 2
    assert all(c.startswith(("theme_1_", "theme_2_")) for c in mix)
    assert not any(c.startswith("mix_") for c in themes.frame.columns)
    for name in mix:
        assert themes.meta.loc[name, "description"].startswith("weight of the usage theme")
        assert themes.meta.loc[name, "unit"] == "share"


def test_theme_weights_sum_to_one_per_active_customer(themes: FeatureTable) -> None:
    weights = themes.frame[themes.families(["usage_mix"])]
    active = weights.drop(index="U12")
    np.testing.assert_allclose(active.sum(axis=1), 1.0, atol=1e-9)
    assert (weights.to_numpy() >= 0).all()
    assert (weights.loc["U12"] == 0).all()


def test_themes_separate_the_two_kinds_of_users(themes: FeatureTable) -> None:
    weights = themes.frame[themes.families(["usage_mix"])].drop(index="U12")
    lead = weights.to_numpy().argmax(axis=1)
    odd = np.array([int(c[1:]) % 2 for c in weights.index])
    assert len(set(lead[odd == 1])) == 1 and len(set(lead[odd == 0])) == 1
    assert set(lead[odd == 1]) != set(lead[odd == 0])


def test_themes_are_reproducible(themes: FeatureTable, tmp_path: Path) -> None:
    tables = {
        "customers": [{"customer_id": f"U{i:02d}"} for i in range(13)],
        "usage_events": _usage_rows(),
    }
    again = _build(write_csv_tables(tmp_path, tables), {"mix_max_features": 3, "mix_themes": 2})
    pd.testing.assert_frame_equal(again.frame.sort_index(), themes.frame.sort_index())


# ---------------------------------------------------------------- name collisions


def test_product_features_differing_in_case_give_one_column(write_tables) -> None:
    folder = write_tables(
        {
            "customers": [{"customer_id": "A"}],
            "usage_events": [
                {"customer_id": "A", "timestamp": "2026-03-01", "feature": "Reports"},
                {"customer_id": "A", "timestamp": "2026-03-02", "feature": "reports"},
                {"customer_id": "A", "timestamp": "2026-03-03", "feature": "reports"},
                {"customer_id": "A", "timestamp": "2026-03-04", "feature": "Export"},
            ],
        }
    )
    t = _build(folder)
    assert not t.frame.columns.duplicated().any()
    assert t.families(["usage_mix"]) == ["mix_export", "mix_reports"]
    assert _col(t, "mix_reports") == {"A": 0.75}
    assert t.meta.loc["mix_reports", "label"] == "reports"  # the spelling used most
    assert t.meta.loc["mix_export", "label"] == "Export"


def test_product_features_slugging_alike_share_one_theme_column(write_tables) -> None:
    usage = [
        {"customer_id": f"U{i}", "timestamp": f"2026-03-0{d}", "feature": f}
        for i in range(4)
        for d, f in enumerate(["Reports", "reports", "api", "API ", "export", "sso"], start=1)
    ]
    folder = write_tables({"customers": [{"customer_id": f"U{i}"} for i in range(4)],
                           "usage_events": usage})  # fmt: skip
    t = _build(folder, {"mix_max_features": 3, "mix_themes": 2})
    mix = t.families(["usage_mix"])
    assert len(mix) == 2 and len(set(mix)) == 2
    assert all(c.startswith("theme_") for c in mix)


def test_channel_named_events_does_not_clash_with_the_total(write_tables) -> None:
    folder = write_tables(
        {
            "customers": [{"customer_id": "A"}],
            "engagement_events": [
                {"customer_id": "A", "timestamp": "2026-03-01", "channel": "events"},
                {"customer_id": "A", "timestamp": "2026-03-02", "channel": "webinar"},
            ],
        }
    )
    t = _build(folder)
    assert not t.frame.columns.duplicated().any()
    assert _col(t, "engagement_events") == {"A": 2}
    assert _col(t, "engagement_events_channel") == {"A": 1}
    assert _col(t, "engagement_webinar") == {"A": 1}
    assert t.meta.loc["engagement_events_channel", "label"] == "events"


@pytest.mark.parametrize("channel", ["recency_days", "silent", "Silent"])
def test_channels_named_like_the_other_totals_get_their_own_column(
    write_tables, channel: str
) -> None:
    folder = write_tables(
        {
            "customers": [{"customer_id": "A"}],
            "engagement_events": [
                {"customer_id": "A", "timestamp": "2026-03-01", "channel": channel}
            ],
        }
    )
    t = _build(folder)
    assert not t.frame.columns.duplicated().any()
    assert _col(t, "engagement_silent") == {"A": 0}
    assert _col(t, "engagement_recency_days") == {"A": pytest.approx(30)}
    assert _col(t, f"engagement_{channel.lower()}_channel") == {"A": 1}


def test_channels_differing_in_case_are_one_channel(write_tables) -> None:
    folder = write_tables(
        {
            "customers": [{"customer_id": "A"}, {"customer_id": "B"}],
            "engagement_events": records(
                "customer_id timestamp channel",
                ("A", "2026-03-01", "Email Open"),
                ("A", "2026-03-02", "email_open"),
                ("B", "2026-03-03", "email_open"),
                ("B", "2026-03-04", "Webinar"),
            ),
        }
    )
    t = _build(folder, {"max_categories": 1})
    assert t.families(["engagement"]) == [
        "engagement_events", "engagement_recency_days", "engagement_email_open",
        "engagement_silent",
    ]  # fmt: skip
    assert _col(t, "engagement_email_open") == {"A": 2, "B": 1}
    assert t.meta.loc["engagement_email_open", "label"] == "email open"


def test_engine_query_gives_what_duckdb_df_gives(folder: Path) -> None:
    """Text through Arrow, the rest through ``df()``: the frame is ``df()``'s, type for type."""
    from features.engine import Engine

    loaded = load_data(folder)
    sql = """SELECT CASE WHEN i % 3 = 0 THEN NULL ELSE 'c' || i END AS customer_id,
        i * 0.5 AS x, CASE WHEN i % 2 = 0 THEN NULL ELSE i END AS n, SUM(i) OVER () AS total,
        CAST(i AS DECIMAL(9, 2)) AS amount, i % 2 = 0 AS even,
        DATE '2024-01-01' + CAST(i AS INTEGER) AS day,
        TIMESTAMP '2024-01-01' + INTERVAL (i) HOUR AS at,
        CAST(TIMESTAMP '2024-01-01' AS TIMESTAMPTZ) AS zoned, 'x' || i AS label
        FROM range(2000) r(i)"""
    engine = Engine(loaded)
    loaded.con.execute("SELECT customer_id FROM customers").fetchone()  # a result left unread
    for query in (sql, f"{sql} LIMIT 0", "SELECT 'a' AS only_text", "SELECT [1, 2] AS l, 'a' AS t"):
        got, want = engine.query(query), loaded.con.execute(query).df()
        assert list(got.dtypes) == list(want.dtypes), query
        pd.testing.assert_frame_equal(got, want)


def _per_customer(con, aggregate: str, source: str) -> pd.DataFrame:
    """``aggregate`` of each customer of ``source``, sorted by customer."""
    return con.execute(
        f"SELECT customer_id, {aggregate} AS n FROM {source} "
        "GROUP BY customer_id ORDER BY customer_id"
    ).df()


@pytest.mark.parametrize("days", [30, 124, 125, 126, 400, 2000])
def test_distinct_days_counts_what_count_distinct_counts(days: int) -> None:
    """Bits of a 128-bit integer, of a bit string or ``COUNT(DISTINCT)``: one count."""
    import duckdb

    from features.engine import Dialect

    start = pd.Timestamp("2026-01-01 23:59:59")
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE e AS SELECT 'c' || (i % 37) AS customer_id,
        CASE WHEN i % 11 = 0 THEN NULL ELSE TIMESTAMP '2026-01-02' + INTERVAL (
            (i * 7919) % ({days} * 24)) HOUR END AS t
        FROM range(5000) r(i)""")  # fmt: skip
    edges = f"TIMESTAMP '2026-01-02', TIMESTAMP '2026-01-01' + INTERVAL ({days}) DAY"
    con.execute(f"INSERT INTO e VALUES ('edge', NULL), ('edge', {edges.split(', ')[0]})")
    con.execute(f"INSERT INTO e VALUES ('edge', {edges.split(', ')[1]}), ('none', NULL)")
    got = _per_customer(con, Dialect().distinct_days("t", start, days), "e")
    pd.testing.assert_frame_equal(got, _per_customer(con, "COUNT(DISTINCT CAST(t AS DATE))", "e"))
    assert got.set_index("customer_id")["n"].to_dict()["edge"] == 2


@pytest.mark.parametrize("n", [3, 126, 127, 300])
def test_distinct_positions_counts_what_count_distinct_counts(n: int) -> None:
    """The distinct product features of each customer, by their positions among ``n``."""
    import duckdb

    from features.engine import Dialect

    values = [f"f{i}" for i in range(n)]
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE e AS SELECT 'c' || (i % 13) AS customer_id,
        CASE WHEN i % 7 = 0 THEN NULL ELSE 'f' || ((i * 31) % {n}) END AS feature
        FROM range(3000) r(i)""")  # fmt: skip
    con.execute(f"INSERT INTO e VALUES ('ends', 'f0'), ('ends', 'f{n - 1}'), ('none', NULL)")
    dialect = Dialect()
    position = dialect.position(values, "feature")
    got = _per_customer(
        con,
        dialect.distinct_positions("_i", "feature", n),
        f"(SELECT *, {position} AS _i FROM e)",
    )
    pd.testing.assert_frame_equal(got, _per_customer(con, "COUNT(DISTINCT feature)", "e"))
    assert got.set_index("customer_id")["n"].to_dict()["ends"] == 2


def test_feature_table_is_assembled_as_pandas_assembles_a_dict() -> None:
    """Floats in one kept block, other types inserted in place: pandas' frame of a dict."""
    from features.builders import _assemble, _filled
    from features.table import Feature

    n = 6
    index = pd.Index(pd.array([f"c{i}" for i in range(n)], dtype="string"), name="customer_id")
    nan = np.nan
    columns = {
        "count": pd.array([1.0, nan, 3.0, nan, 5.0, 6.0]).to_numpy(),
        "tier": pd.array(["a", None, "b", "a", None, "c"], dtype="string"),
        "size": np.arange(n, dtype=np.int64),
        "recency": np.array([2.0, nan, nan, 1.0, 0.5, 9.0]),
        "label": pd.array(list("xyzxyz"), dtype="string"),
    }
    fills = {"count": "zero", "recency": "span", "absent": "zero"}
    names = ["tier", "count", "absent", "size", "recency", "label", "undefined"]
    features = [Feature(f, "x", "needs", f, "u", "none", f, fill=fills.get(f, "nan"))
                for f in names]  # fmt: skip
    want = pd.DataFrame(
        {f.name: _filled(columns.get(f.name), f, 30.0, n) for f in features}, index=index
    )
    got = _assemble(dict(columns), features, 30.0, index)
    pd.testing.assert_frame_equal(got, want)
    assert list(got.columns) == names and got["absent"].eq(0.0).all()
    assert got["recency"].tolist() == [2.0, 30.0, 30.0, 1.0, 0.5, 9.0]
    assert _assemble({}, [], 30.0, index).columns.equals(pd.DataFrame({}, index=index).columns)

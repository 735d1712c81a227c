"""Tests for the value lens features (``features.rfm``) on a hand-made transaction log.

``AS_OF`` is the plain date 2026-03-31, so the end of that day: F's purchases late on the
31st count, A's purchase on 2026-04-05 does not. Purchase days (amount >= 0, same-day
amounts summed, refunds left out), with the days since each customer's first one:

- A: Jan 1 (100 + 50 = 150), Jan 15 (30), Mar 12 (60); the Feb 12 refund is left out.
  frequency 2, recency 70 d = 10 w, T 89 d, repeat mean (30 + 60) / 2 = 45, last purchase
  19 days before as_of, mean per purchase day 240 / 3 = 80.
- B: Mar 3 (a free order, 0, still a purchase), Mar 17 (40). frequency 1, recency 2 w,
  T 4 w, repeat mean 40, last 14 days ago, mean per day 20.
- C: Dec 31 2025 (200). frequency 0, T 90 d, repeat mean 0, last 90 days ago, mean 200.
- D: only a refund, E: nothing. Not in the CLV summary; RFM scores 0, tier none.
- F: Mar 24 (25), Mar 31 (25 + 10). frequency 1, recency 1 w, T 1 w, repeat mean 35,
  last 0 days ago, mean per day 30.

RFM scores over the 4 buyers: ``1 + floor(5 (rank - 1) / 3)``, so ranks 1-4 score 1, 2, 4,
5; ties share the lowest rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import records

from features import DataError, load_data
from features.engine import Engine
from features.rfm import CLV_COLUMNS, clv_summary, rfm

AS_OF = "2026-03-31"

TABLES = {
    "customers": records(
        "customer_id signup_date",
        ("F", "2026-03-01"),
        ("A", "2025-12-01"),
        ("B", "2026-03-01"),
        ("C", "2025-12-31"),
        ("D", "2026-01-01"),
        ("E", "2026-01-01"),
    ),
    "transactions": records(
        "customer_id timestamp amount",
        ("A", "2026-01-01 10:00:00", "100"),
        ("A", "2026-01-01 15:00:00", "50"),
        ("A", "2026-01-15", "30"),
        ("A", "2026-02-12", "-20"),
        ("A", "2026-03-12", "60"),
        ("A", "2026-04-05", "500"),
        ("B", "2026-03-03", "0"),
        ("B", "2026-03-17", "40"),
        ("C", "2025-12-31", "200"),
        ("D", "2026-02-01", "-10"),
        ("F", "2026-03-24", "25"),
        ("F", "2026-03-31 09:00:00", "25"),
        ("F", "2026-03-31 23:00:00", "10"),
    ),
}


@pytest.fixture
def engine(write_tables):
    """An engine over the hand-made tables at a given as_of (default ``AS_OF``)."""
    opened = []

    def make(as_of: str = AS_OF, tables: dict | None = None) -> Engine:
        data = load_data(write_tables(tables or TABLES, folder=f"data_{len(opened)}"), as_of=as_of)
        opened.append(data)
        return Engine(data)

    yield make
    for data in opened:
        data.con.close()


def _rows(frame: pd.DataFrame) -> dict[str, tuple]:
    return {r[0]: tuple(r[1:]) for r in frame.itertuples(index=False)}


def test_clv_summary_follows_the_daily_conventions(engine) -> None:
    e = engine()
    summary = clv_summary(e, e.data.as_of, {})
    assert tuple(summary.columns) == CLV_COLUMNS
    assert list(summary["customer_id"]) == ["A", "B", "C", "F"]
    expected = {
        "A": (2, 10.0, 89 / 7, 45.0),
        "B": (1, 2.0, 4.0, 40.0),
        "C": (0, 0.0, 90 / 7, 0.0),
        "F": (1, 1.0, 1.0, 35.0),
    }
    got = _rows(summary)
    assert got.keys() == expected.keys()
    for cid, want in expected.items():
        assert got[cid] == pytest.approx(want), cid
    assert summary["frequency"].dtype == "int64"


def test_clv_summary_uses_only_transactions_up_to_as_of(engine) -> None:
    e = engine("2026-03-16")
    got = _rows(clv_summary(e, e.data.as_of, {}))
    # F has not bought yet and B's Mar 17 purchase is later; T runs to Mar 16.
    assert got == {
        "A": pytest.approx((2, 10.0, 74 / 7, 45.0)),
        "B": pytest.approx((0, 0.0, 13 / 7, 0.0)),
        "C": pytest.approx((0, 0.0, 75 / 7, 0.0)),
    }


def test_clv_summary_over_years_sums_same_day_purchases(engine) -> None:
    # beyond `features.engine.MAX_BITS` days the distinct days are counted without bit strings
    tables = {
        "customers": records("customer_id signup_date", ("X", "2022-01-01"), ("Y", "2022-01-01")),
        "transactions": records(
            "customer_id timestamp amount",
            ("X", "2022-01-03", "10"),
            ("X", "2026-03-01 10:00:00", "20"),
            ("X", "2026-03-01 12:00:00", "5"),
            ("Y", "2022-01-03", "7"),
            ("Y", "2026-03-30", "3"),
        ),
    }
    e = engine(tables=tables)
    span = (pd.Timestamp("2026-03-31") - pd.Timestamp("2022-01-03")).days
    recency = (pd.Timestamp("2026-03-01") - pd.Timestamp("2022-01-03")).days
    assert _rows(clv_summary(e, e.data.as_of, {})) == {
        "X": pytest.approx((1, recency / 7, span / 7, 25.0)),
        "Y": pytest.approx((1, (span - 1) / 7, span / 7, 3.0)),
    }


def test_rfm_scores_and_tiers(engine) -> None:
    e = engine()
    frame, feats, _ = rfm(e, e.data.as_of, {})
    assert sorted(frame["customer_id"]) == ["A", "B", "C", "D", "E", "F"]
    # (rfm_r, rfm_f, rfm_m, value_tier); totals A 11, B 7, C 7, F 9.
    assert _rows(frame[["customer_id", "rfm_r", "rfm_f", "rfm_m", "value_tier"]]) == {
        "A": (2, 5, 4, "mid"),
        "B": (4, 2, 1, "low"),
        "C": (1, 1, 5, "low"),
        "D": (0, 0, 0, "none"),
        "E": (0, 0, 0, "none"),
        "F": (5, 2, 2, "mid"),
    }
    assert [f.name for f in feats] == ["rfm_r", "rfm_f", "rfm_m", "value_tier"]
    assert {(f.lens, f.family) for f in feats} == {("value", "rfm")}
    assert [f.transform for f in feats] == ["none", "none", "none", "category"]


def test_value_tiers_come_from_the_params(engine) -> None:
    e = engine()
    frame, _, _ = rfm(e, e.data.as_of, {"value_tiers": {"high": 11, "mid": 9}})
    tiers = dict(zip(frame["customer_id"], frame["value_tier"], strict=True))
    assert tiers == {"A": "high", "B": "low", "C": "low", "D": "none", "E": "none", "F": "mid"}


def test_scores_do_not_depend_on_row_order(engine) -> None:
    shuffled = {**TABLES, "transactions": TABLES["transactions"][::-1]}
    e1, e2 = engine(), engine(tables=shuffled)
    one = rfm(e1, e1.data.as_of, {})[0].sort_values("customer_id", ignore_index=True)
    two = rfm(e2, e2.data.as_of, {})[0].sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(one, two)


@pytest.mark.parametrize("seed", range(4))
def test_score_edges_are_those_of_ranking_every_value(seed: int) -> None:
    """The edges found by selection are those the scores' definition gives: ties, -0.0, NaN."""
    from scipy.stats import rankdata

    from features.rfm import _edges

    rng = np.random.default_rng(seed)
    cases = [np.array([]), np.array([3.0]), np.array([-0.0, 0.0, 0.0, -0.0, -1.0])]
    for n in (2, 5, 7, 31, 1000):
        cases += [
            rng.integers(0, 4, n).astype(float),  # many ties (purchase days)
            -rng.integers(0, 3, n) * 1.0,  # recencies: -0.0 and 0.0
            np.where(rng.random(n) < 0.5, 0.0, -0.0),
            rng.normal(size=n),
            np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        ]
    for values in cases:
        n = len(values)
        score = np.minimum(
            5, 1 + np.floor(5 * (rankdata(values, method="min") - 1.0) / max(n - 1, 1))
        )
        want = [values[score >= s].min() if (score >= s).any() else np.inf for s in range(2, 6)]
        assert [repr(float(v)) for v in _edges(values.copy())] == [repr(float(v)) for v in want], (
            values
        )


def test_bad_value_tiers_are_refused_with_their_values(engine) -> None:
    e = engine()
    with pytest.raises(ValueError, match=r"3 <= mid <= high <= 15, got \{'high': 8, 'mid': 12\}"):
        rfm(e, e.data.as_of, {"value_tiers": {"high": 8, "mid": 12}})


def test_no_transactions_table_is_a_data_error(write_tables) -> None:
    folder: Path = write_tables(
        {
            "customers": records("customer_id", ("A",)),
            "usage_events": records("customer_id timestamp feature", ("A", "2026-03-01", "x")),
        }
    )
    data = load_data(folder, as_of=AS_OF)
    try:
        with pytest.raises(DataError, match="needs a transactions table.*customers, usage_events"):
            clv_summary(Engine(data), data.as_of, {})
    finally:
        data.con.close()

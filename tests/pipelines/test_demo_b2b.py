"""Tests for the B2B demo generator (``pipelines.demo.accounts``)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.demo.accounts import ACCOUNT_PERSONAS, ROLE_TITLES, make_b2b_demo, write_b2b_demo

N = 120


@pytest.fixture(scope="module")
def demo() -> dict[str, pd.DataFrame]:
    return make_b2b_demo(N, seed=3)


def test_accounts_people_and_roles(demo):
    customers = demo["customers"]
    assert list(customers.columns) == [
        "customer_id", "account_id", "name", "email", "signup_date", "role", "region",
        "industry", "company_size", "plan",
    ]  # fmt: skip
    assert customers["customer_id"].is_unique
    sizes = customers.groupby("account_id").size()
    assert len(sizes) == N and sizes.between(2, 15).all()
    titles = {t for ts in ROLE_TITLES.values() for t in ts}
    assert set(customers["role"]) <= titles
    # account attributes are the same for all of an account's people
    for column in ("region", "industry", "company_size", "plan"):
        assert (customers.groupby("account_id")[column].nunique() == 1).all(), column
    planted = demo["planted_accounts"]
    assert planted["account_id"].tolist() == sorted(sizes.index)
    assert set(planted["persona"]) == set(ACCOUNT_PERSONAS)


def test_invoices_go_to_one_billing_contact_per_account(demo):
    people = demo["customers"].set_index("customer_id")["account_id"]
    payers = demo["transactions"]["customer_id"].map(people)
    billing = demo["transactions"].groupby(payers)["customer_id"].nunique()
    assert (billing == 1).all()


def test_every_event_names_a_known_person(demo):
    known = set(demo["customers"]["customer_id"])
    for name in (
        "transactions",
        "usage_events",
        "engagement_events",
        "feedback",
        "support_tickets",
    ):
        assert set(demo[name]["customer_id"]) <= known, name
        assert len(demo[name]) > 0, name


def test_same_seed_same_tables(tmp_path):
    a, b = make_b2b_demo(40, seed=9), make_b2b_demo(40, seed=9)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    rows = write_b2b_demo(tmp_path, n_accounts=40, seed=9, file_format="parquet")
    assert (tmp_path / "planted_accounts.csv").exists()
    assert (tmp_path / "customers.parquet").exists()
    assert rows["planted_accounts"] == 40


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_accounts must be positive"):
        make_b2b_demo(0)
    with pytest.raises(ValueError, match="file_format"):
        write_b2b_demo("unused", file_format="xlsx")

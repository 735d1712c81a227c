"""Tests for the synthetic demo data generator (``pipelines.demo``)."""

import pandas as pd
import pytest

from pipelines.demo import DEMO_END, make_demo, write_demo

N = 2000

COLUMNS = {
    "customers": [
        "customer_id", "name", "email", "signup_date", "region", "industry", "company_size", "plan",
    ],
    "transactions": ["customer_id", "timestamp", "amount", "discount", "days_late"],
    "usage_events": ["customer_id", "timestamp", "feature", "quantity"],
    "engagement_events": ["customer_id", "timestamp", "channel"],
    "feedback": ["customer_id", "timestamp", "nps", "csat", "comment"],
    "support_tickets": ["customer_id", "opened_at", "closed_at", "priority", "topic"],
    "planted_personas": ["customer_id", "persona"],
}  # fmt: skip
PERSONA_NAMES = {
    "power_users",
    "struggling_enterprise",
    "bargain_hunters",
    "fading_accounts",
    "new_explorers",
    "analytics_specialists",
}
END = pd.Timestamp(DEMO_END) + pd.Timedelta(days=1)  # exclusive upper bound


@pytest.fixture(scope="module")
def demo() -> dict[str, pd.DataFrame]:
    """Demo tables shared by the tests of this module."""
    return make_demo(N, seed=7)


@pytest.fixture(scope="module")
def persona(demo: dict[str, pd.DataFrame]) -> pd.Series:
    """Planted persona per customer id."""
    return demo["planted_personas"].set_index("customer_id")["persona"]


def test_tables_and_columns(demo: dict[str, pd.DataFrame]) -> None:
    """All tables exist with exactly the contract columns and are not empty."""
    assert set(demo) == set(COLUMNS)
    for name, cols in COLUMNS.items():
        assert list(demo[name].columns) == cols, name
        assert len(demo[name]) > 0, name
    customers = demo["customers"]
    assert len(customers) == N
    assert customers["customer_id"].is_unique
    assert customers["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert set(customers["region"]) == {"EMEA", "NA", "LATAM", "APAC"}
    assert set(customers["plan"]) == {"Starter", "Pro", "Enterprise"}
    assert (customers["company_size"] >= 1).all()
    assert customers["email"].str.endswith("@example.com").all()
    planted = demo["planted_personas"]
    assert planted["customer_id"].tolist() == customers["customer_id"].tolist()
    assert set(planted["persona"]) == PERSONA_NAMES


def test_value_ranges(demo: dict[str, pd.DataFrame]) -> None:
    """Scores, quantities, discounts and categories stay in their domains."""
    fb = demo["feedback"]
    assert pd.api.types.is_integer_dtype(fb["nps"]) and pd.api.types.is_integer_dtype(fb["csat"])
    assert fb["nps"].between(0, 10).all() and fb["csat"].between(1, 5).all()
    assert 0.35 <= fb["customer_id"].nunique() / N <= 0.5
    assert fb["comment"].isna().any() and fb["comment"].notna().any()
    tx = demo["transactions"]
    assert (tx["discount"] >= 0).all() and (tx["days_late"] >= 0).all()
    assert (tx["amount"] < 0).any(), "expected a few refunds"
    usage = demo["usage_events"]
    assert (usage["quantity"] >= 1).all()
    assert usage["feature"].nunique() == 10
    assert set(demo["engagement_events"]["channel"]) <= {
        "email_open", "email_click", "web_visit", "webinar", "event", "community_post",
    }  # fmt: skip
    tickets = demo["support_tickets"]
    assert set(tickets["priority"]) <= {"low", "medium", "high", "urgent"}
    assert tickets["closed_at"].isna().any()
    closed = tickets.dropna(subset=["closed_at"])
    assert (closed["closed_at"] >= closed["opened_at"]).all()


def test_timestamps_within_customer_lifetime(demo: dict[str, pd.DataFrame]) -> None:
    """No event precedes the customer's signup or follows DEMO_END."""
    signup = demo["customers"].set_index("customer_id")["signup_date"]
    assert pd.api.types.is_datetime64_dtype(signup)
    assert signup.max() < END and signup.min() >= END - pd.Timedelta(days=731)
    for name, col in [
        ("transactions", "timestamp"),
        ("usage_events", "timestamp"),
        ("engagement_events", "timestamp"),
        ("feedback", "timestamp"),
        ("support_tickets", "opened_at"),
        ("support_tickets", "closed_at"),
    ]:
        df = demo[name]
        assert pd.api.types.is_datetime64_dtype(df[col]), (name, col)
        assert (df[col].dropna() < END).all(), (name, col)
        known = df["customer_id"].isin(signup.index)
        start = df.loc[known, "customer_id"].map(signup)
        assert (df.loc[known, col].dropna() >= start[df.loc[known, col].notna()]).all()
        if name != "usage_events":
            assert known.all(), name


def test_unknown_customers_in_usage(demo: dict[str, pd.DataFrame]) -> None:
    """A small share of usage rows references customers that do not exist."""
    usage = demo["usage_events"]
    unknown = ~usage["customer_id"].isin(demo["customers"]["customer_id"])
    assert 0.0005 < unknown.mean() < 0.005
    assert usage.loc[unknown, "customer_id"].str.startswith("C9").all()


def test_some_comments_contain_pii(demo: dict[str, pd.DataFrame]) -> None:
    """About 1% of comments carry an e-mail address or a phone number."""
    comments = demo["feedback"]["comment"].dropna()
    pii = comments.str.contains(r"@example\.com|\+1 \d{3} 555 \d{4}", regex=True)
    assert 0 < pii.sum() < 0.05 * len(comments)


def test_determinism() -> None:
    """The same seed reproduces the data exactly; another seed changes it."""
    first, again, other = make_demo(300, seed=3), make_demo(300, seed=3), make_demo(300, seed=4)
    for name in COLUMNS:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["usage_events"].equals(other["usage_events"])
    assert not first["customers"].equals(other["customers"])


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_write_demo(tmp_path, file_format: str) -> None:
    """Files are written, readable with pandas, and row counts match the return value."""
    rows = write_demo(tmp_path / "demo", n_customers=300, seed=1, file_format=file_format)
    frames = make_demo(300, seed=1)
    assert rows == {name: len(df) for name, df in frames.items()}
    for name, cols in COLUMNS.items():
        ext = "csv" if name == "planted_personas" else file_format
        path = tmp_path / "demo" / f"{name}.{ext}"
        back = pd.read_csv(path) if ext == "csv" else pd.read_parquet(path)
        assert list(back.columns) == cols
        assert len(back) == rows[name]
    assert not list((tmp_path / "demo").glob(".*.tmp"))
    if file_format == "csv":
        usage = pd.read_csv(tmp_path / "demo" / "usage_events.csv", nrows=5)
        assert usage["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d").all()
        customers = pd.read_csv(tmp_path / "demo" / "customers.csv", nrows=5)
        assert customers["signup_date"].str.fullmatch(r"\d{4}-\d\d-\d\d").all()


def test_rejects_bad_arguments(tmp_path) -> None:
    """Invalid sizes and formats are refused."""
    with pytest.raises(ValueError):
        make_demo(0)
    with pytest.raises(ValueError):
        write_demo(tmp_path, n_customers=10, file_format="xlsx")


def test_personas_differ_as_planted(demo: dict[str, pd.DataFrame], persona: pd.Series) -> None:
    """Planted personas differ in the intended directions."""
    tx = demo["transactions"]
    revenue = tx.groupby("customer_id")["amount"].sum().reindex(persona.index, fill_value=0)
    rev = revenue.groupby(persona).mean()
    assert rev["struggling_enterprise"] > rev["bargain_hunters"]
    assert rev["power_users"] > rev["bargain_hunters"]

    gross = tx["amount"] + tx["discount"]
    share = tx["discount"].groupby(tx["customer_id"]).sum() / gross.groupby(tx["customer_id"]).sum()
    disc = share.groupby(persona).mean()
    assert disc.idxmax() == "bargain_hunters"

    latest = demo["feedback"].sort_values("timestamp").groupby("customer_id")["nps"].last()
    nps = latest.groupby(persona).mean()
    assert nps["power_users"] > nps["analytics_specialists"] > nps["bargain_hunters"]
    assert nps["bargain_hunters"] > nps["fading_accounts"] > nps["struggling_enterprise"]

    tickets = demo["support_tickets"].groupby("customer_id").size()
    tickets = tickets.reindex(persona.index, fill_value=0).groupby(persona).mean()
    assert tickets["struggling_enterprise"] > 3 * tickets["power_users"]

    signup = demo["customers"].set_index("customer_id")["signup_date"]
    new = signup[persona == "new_explorers"]
    assert (new >= END - pd.Timedelta(days=125)).all()
    assert (signup[persona != "new_explorers"] < END - pd.Timedelta(days=125)).all()

    usage = demo["usage_events"]
    age = (END - usage["timestamp"]).dt.days
    recent = usage[age < 30].groupby("customer_id").size()
    before = usage[(age >= 30) & (age < 60)].groupby("customer_id").size()
    ratio = (recent.groupby(persona).sum() / before.groupby(persona).sum()).dropna()
    assert ratio["fading_accounts"] < 0.5 < ratio["power_users"]
    assert ratio["new_explorers"] > 1.2

    breadth = usage.groupby("customer_id")["feature"].nunique().groupby(persona).mean()
    assert breadth["power_users"] > breadth["bargain_hunters"]
    mix = pd.crosstab(usage["customer_id"].map(persona), usage["feature"], normalize="index")
    assert (
        mix.loc["analytics_specialists", "data_export"]
        > 2 * mix["data_export"].drop("analytics_specialists").max()
    )

"""Personal data stays out: scrubbed free text, pseudonymized ids, clean outputs and store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features import DataError, load_data
from features.privacy import pseudonymize, pseudonymize_values, scrub

# ---------------------------------------------------------------- scrub

EMAILS = [
    ("write to jane.doe@example.com please", "write to [email] please"),
    ("jane.doe+news@mail.example.co.uk", "[email]"),
    ("Contact: First.Last-2@sub.example.org.", "Contact: [email]."),
    ("ops_team%eu@example-corp.io, cc boss@example.com", "[email], cc [email]"),
    ("José.García@correo.es escribió", "[email] escribió"),
    ("<mailto:help@example.com>", "<mailto:[email]>"),
]

PHONES = [
    ("call me on +1 (555) 123-4567", "call me on [phone]"),
    ("UK office: +44 20 7946 0958.", "UK office: [phone]."),
    ("mobile 07700 900123 after 6pm", "mobile [phone] after 6pm"),
    ("Paris +33 6 12 34 56 78", "Paris [phone]"),
    ("Berlin 0049 30 1234567 or +49 (0)30 1234567", "Berlin [phone] or [phone]"),
    ("toll free 1-800-555-0199", "toll free [phone]"),
    ("US: 555.123.4567 / 555-123-4567 / (555) 123-4567", "US: [phone] / [phone] / [phone]"),
    ("tel:+15551234567", "tel:[phone]"),
    ("India +91 98765 43210", "India [phone]"),
    ("ring 555-1234", "ring [phone]"),
]

KEPT = [
    "We pay $1,200 a month",
    "invoice of 1.200,50 € was wrong",
    "renewal in 2026, maybe 2027",
    "see ticket #4521 and #4522",
    "since 2026-03-01 14:22:05 it fails",
    "from 01.03.2026 to 31/03/2026",
    "the 2025-2026 contract",
    "uptime 99.95% on version 3.2.1",
    "we have 1 200 000 rows",
    "order 12345678 arrived",
    "in 2026 1200 seats were sold",
    "score 9/10, NPS 10",
    "USD 1200000 pipeline",
    "room 101, floor 3",
    "not an address: a@b or me@localhost",
]


@pytest.mark.parametrize(("text", "expected"), EMAILS, ids=[e for _, e in EMAILS])
def test_scrub_replaces_emails(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(("text", "expected"), PHONES, ids=[t for t, _ in PHONES])
def test_scrub_replaces_international_phone_numbers(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_scrub_keeps_ordinary_numbers(text: str) -> None:
    assert scrub(text) == text


def test_scrub_handles_mixed_text_and_missing_values() -> None:
    comment = (
        "Billing charged $1,200 twice (ticket #4521, 2026-03-01). Reach me at "
        "anna.k+billing@example.com or +49 151 23456789."
    )
    assert scrub(comment) == (
        "Billing charged $1,200 twice (ticket #4521, 2026-03-01). Reach me at [email] or [phone]."
    )
    comments = pd.Series(["ok", None, float("nan"), "mail x.y@example.com"])
    scrubbed = comments.map(scrub)
    assert scrubbed[0] == "ok" and pd.isna(scrubbed[1]) and pd.isna(scrubbed[2])
    assert scrubbed[3] == "mail [email]"


def test_scrub_is_idempotent() -> None:
    text = "a@example.com +44 20 7946 0958 $1,200"
    assert scrub(scrub(text)) == scrub(text) == "[email] [phone] $1,200"


# ---------------------------------------------------------------- pseudonymize


SALT = "pseudonymize-test-salt"
UNKNOWN_IDS = ["ZZ-NOBODY-1", "ZZ-NOBODY-2", "ZZ-NOBODY-3"]
IDS = pd.Series(["C001", "C002", "客户-3", "007", "7"], name="customer_id", index=[5, 6, 7, 8, 9])


def test_pseudonymize_is_salted_sha256_truncated_to_16_hex() -> None:
    out = pseudonymize(IDS, salt="s3cret")
    assert out.str.fullmatch(r"[0-9a-f]{16}").all()
    assert out.index.equals(IDS.index) and out.name == "customer_id"
    assert out.is_unique  # 007 and 7 stay two customers
    assert not set(out) & set(IDS)


def test_pseudonymize_is_deterministic_per_salt_and_differs_across_salts() -> None:
    first, again = pseudonymize(IDS, salt="a"), pseudonymize(IDS, salt="a")
    other = pseudonymize(IDS, salt="b")
    pd.testing.assert_series_equal(first, again)
    assert not (first == other).any()


def test_pseudonymize_does_not_depend_on_the_other_ids() -> None:
    alone = pseudonymize(IDS.iloc[[2]], salt="a")
    assert alone.iloc[0] == pseudonymize(IDS, salt="a").iloc[2]


def test_pseudonymize_keeps_missing_ids_missing_and_hashes_numbers_as_text() -> None:
    out = pseudonymize(pd.Series(["7", None, 7]), salt="a")
    assert pd.isna(out[1])
    assert out[0] == out[2]


@pytest.mark.parametrize("salt", ["", None])
def test_pseudonymize_needs_a_salt(salt) -> None:
    with pytest.raises(ValueError, match="salt"):
        pseudonymize(IDS, salt=salt)


def _load_private(write_tables, tables: dict, **kwargs):
    folder = write_tables(tables)
    return load_data(folder, privacy={"pseudonymize_ids": True}, **kwargs)


def test_the_quality_summary_quotes_pseudonymized_ids(write_tables, monkeypatch) -> None:
    monkeypatch.setenv("PERSONAS_ID_SALT", SALT)
    customers = [{"customer_id": c, "plan": "x"} for c in ("A", "B", "C", "A")]
    usage = [
        {"customer_id": c, "timestamp": f"2026-03-{d:02d}", "feature": "x"}
        for d, c in enumerate(["A"] * 24 + ["ZZ-NOBODY-1"], start=1)
    ]
    data = _load_private(
        write_tables,
        {"customers": customers, "usage_events": usage},
        validation={"on_error": "quarantine"},
    )
    info = data.quality["tables"]["usage_events"]
    assert info["unknown_customer_examples"] == pseudonymize_values(["ZZ-NOBODY-1"], SALT)
    [problem] = data.quality["problems"]
    assert "is duplicated in 1 of 4 rows" in problem and "'A'" not in problem
    assert repr(pseudonymize_values(["A"], SALT)[0]) in problem
    assert "as pseudonyms: privacy.pseudonymize_ids is on" in problem


def test_an_error_quotes_pseudonymized_unknown_ids(write_tables, monkeypatch) -> None:
    monkeypatch.setenv("PERSONAS_ID_SALT", SALT)
    usage = [{"customer_id": c, "timestamp": "2026-03-01", "feature": "x"} for c in "AZ"]
    with pytest.raises(DataError) as err:
        _load_private(write_tables, {"customers": [{"customer_id": "A"}], "usage_events": usage})
    message = str(err.value)
    assert "'Z'" not in message and repr(pseudonymize_values(["Z"], SALT)[0]) in message


def test_pseudonymized_ids_need_the_salt(write_tables, monkeypatch) -> None:
    monkeypatch.delenv("PERSONAS_ID_SALT", raising=False)
    usage = [{"customer_id": "A", "timestamp": "2026-03-01", "feature": "x"}]
    with pytest.raises(DataError, match="PERSONAS_ID_SALT is empty"):
        _load_private(write_tables, {"customers": [{"customer_id": "A"}], "usage_events": usage})


# ---------------------------------------------------------------- end to end


def _cli(*args, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_no_name_or_email_reaches_the_outputs_or_mlflow(tmp_path: Path) -> None:
    data, out, store = tmp_path / "demo", tmp_path / "out", tmp_path / "mlflow"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    _cli("demo", "--out", data, "--customers", 300, "--seed", 3, env=env)
    _cli("train", "--data", data, "--output", out, env=env)

    customers = pd.read_csv(data / "customers.csv", dtype=str)
    secrets = set(customers["email"]) | set(customers["name"])
    secrets |= {s.lower() for s in secrets}
    files = _files(out, store)
    assert any(p.suffix == ".parquet" for p in files)
    assert any(p.name == "mlflow.db" for p in files)
    assert any("artifacts" in p.parts for p in files)
    leaks = {}
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="ignore")
        found = sorted(s for s in secrets if s in text)
        if found:
            leaks[str(path.relative_to(tmp_path))] = found[:3]
    assert not leaks, leaks


def _append(path: Path, rows: pd.DataFrame) -> None:
    rows.to_csv(path, mode="a", header=False, index=False)


def _parquet_text(path: Path) -> str:
    """The values and metadata of a Parquet file as text (its pages may be compressed)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = b" ".join(k + b" " + v for k, v in (table.schema.metadata or {}).items())
    return table.to_pandas().reset_index().to_csv() + meta.decode("utf-8", errors="ignore")


@pytest.mark.slow
def test_pseudonymized_ids_reach_no_output_nor_the_mlflow_store(tmp_path: Path) -> None:
    data, store = tmp_path / "demo", tmp_path / "mlflow"
    config = tmp_path / "private.yaml"
    config.write_text(
        "privacy: {pseudonymize_ids: true}\n"
        "validation: {on_error: quarantine}\n"
        f"tracking: {{uri: 'sqlite:///{store / 'mlflow.db'}'}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PERSONAS_ID_SALT"] = SALT
    _cli("demo", "--out", data, "--customers", 600, "--seed", 3, env=env)
    customers = pd.read_csv(data / "customers.csv", dtype=str)
    tickets = pd.read_csv(data / "support_tickets.csv", dtype=str)
    feedback = pd.read_csv(data / "feedback.csv", dtype=str)
    # rows of unknown customers (counted, left out), a duplicated customer and an NPS of 11
    # (quarantined)
    _append(data / "support_tickets.csv", tickets.head(3).assign(customer_id=UNKNOWN_IDS))
    _append(data / "customers.csv", customers.iloc[[7]])
    _append(data / "feedback.csv", feedback.head(1).assign(nps="11"))
    _cli("train", "--data", data, "--config", config, "--output", tmp_path / "first", env=env)
    _cli("train", "--data", data, "--config", config, "--output", tmp_path / "second", env=env)

    quality = json.loads((tmp_path / "second" / "data_quality.json").read_text())
    tickets_quality = quality["tables"]["support_tickets"]
    assert tickets_quality["unknown_customer_rows"] == 3
    hashed = pseudonymize(pd.Series(UNKNOWN_IDS), SALT)
    assert sorted(tickets_quality["unknown_customer_examples"]) == sorted(hashed)
    files = _files(tmp_path / "first", tmp_path / "second", store)
    names = {p.name for p in files}
    assert {"report.html", "report.md", "changes.json", "migration.csv", "mlflow.db"} <= names
    assert {"customers.csv", "feedback.csv"} <= {p.name for p in files if "quarantine" in p.parts}
    assert any("artifacts" in p.parts for p in files)
    # every id the data names, known or not (the demo plants a few unknown ones too)
    secrets = {i for f in data.glob("*.csv") for i in pd.read_csv(f, dtype=str)["customer_id"]}
    assert set(UNKNOWN_IDS) | set(customers["customer_id"]) <= secrets
    leaks = {}
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="ignore")
        if path.suffix == ".parquet":
            text += _parquet_text(path)
        found = sorted(s for s in secrets if s in text)
        if found:
            leaks[str(path.relative_to(tmp_path))] = found[:3]
    assert not leaks, leaks
    # the second run is compared with the first on the same (hashed) customers
    changes = json.loads((tmp_path / "second" / "changes.json").read_text())
    assert changes["match_quality"] == 1.0

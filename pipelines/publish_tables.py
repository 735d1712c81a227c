"""The publish tables: their columns, their DDL, and a run's rows as Arrow tables.

`pipelines.publish` writes them in one transaction; the columns are documented there.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pyarrow as pa

from features.contract import DataError

__all__ = ["ASSIGNMENT_COLUMNS", "PERSONA_COLUMNS", "assignments_table", "ddl", "personas_table"]


PERSONA_COLUMNS = {  # column -> (PostgreSQL type, Arrow type)
    "persona_id": ("integer NOT NULL", pa.int32()),
    "name": ("text NOT NULL", pa.string()),
    "size": ("bigint NOT NULL", pa.int64()),
    "share": ("double precision NOT NULL", pa.float64()),
    "nps": ("double precision", pa.float64()),
    "nps_ci_low": ("double precision", pa.float64()),
    "nps_ci_high": ("double precision", pa.float64()),
    "respondents": ("bigint", pa.int64()),
    "revenue_share": ("double precision", pa.float64()),
    "is_focus": ("boolean", pa.bool_()),
    "is_at_risk": ("boolean", pa.bool_()),
    "unstable": ("boolean", pa.bool_()),
    "description": ("text", pa.string()),
    "details": ("jsonb", pa.string()),
}

ASSIGNMENT_COLUMNS = {
    "customer_id": pa.string(),
    "persona_id": pa.int32(),
    "persona_name": pa.string(),
    "confidence": pa.float64(),
    "is_outlier": pa.bool_(),
}


def ddl(s: str) -> list[str]:
    """Return the statements that create the four tables in schema ``s`` (if missing)."""
    personas = ",\n  ".join(f"{c} {t}" for c, (t, _) in PERSONA_COLUMNS.items())
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.persona_runs (
  run_id text PRIMARY KEY,
  kind text NOT NULL,
  level text NOT NULL,
  as_of timestamp NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now(),
  source text,
  model_uri text,
  n_customers bigint NOT NULL,
  n_entered bigint NOT NULL,
  n_moved bigint NOT NULL,
  n_left bigint NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.personas (
  run_id text NOT NULL REFERENCES {s}.persona_runs (run_id),
  {personas},
  PRIMARY KEY (run_id, persona_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.persona_assignments (
  customer_id text PRIMARY KEY,
  persona_id integer NOT NULL,
  persona_name text NOT NULL,
  confidence double precision,
  is_outlier boolean,
  since timestamp NOT NULL,
  run_id text NOT NULL REFERENCES {s}.persona_runs (run_id),
  as_of timestamp NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.persona_membership (
  customer_id text NOT NULL,
  persona_id integer NOT NULL,
  persona_name text NOT NULL,
  valid_from timestamp NOT NULL,
  valid_to timestamp,
  run_id text NOT NULL REFERENCES {s}.persona_runs (run_id),
  closed_by_run_id text REFERENCES {s}.persona_runs (run_id),
  CHECK (valid_to IS NULL OR valid_to >= valid_from)
)""",
        f"CREATE UNIQUE INDEX IF NOT EXISTS persona_membership_open "
        f"ON {s}.persona_membership (customer_id) WHERE valid_to IS NULL",
        f"CREATE INDEX IF NOT EXISTS persona_membership_customer "
        f"ON {s}.persona_membership (customer_id, valid_from)",
    ]


def _number(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def personas_table(personas: list[dict]) -> pa.Table:
    """Return a run's persona table as the rows of ``personas`` (JSON-safe ``details``)."""
    rows = []
    for p in personas:
        row = {
            "persona_id": int(p["persona_id"]),
            "name": str(p.get("custom_name") or p["name"]),
            "size": int(p["size"]),
            "share": float(p["share"]),
            "details": json.dumps(_clean(p), default=str),
        }
        for column in ("nps", "nps_ci_low", "nps_ci_high", "revenue_share"):
            value = _number(p.get(column))
            row[column] = None if value is None else float(value)
        row["respondents"] = None if p.get("respondents") is None else int(p["respondents"])
        for column in ("is_focus", "is_at_risk", "unstable"):
            row[column] = None if p.get(column) is None else bool(p[column])
        description = p.get("custom_description") or p.get("description")
        row["description"] = None if description is None else str(description)
        rows.append(row)
    schema = pa.schema([(c, t) for c, (_, t) in PERSONA_COLUMNS.items()])
    return pa.Table.from_pylist(rows, schema=schema)


def _clean(value):
    """Replace NaN and infinities (not JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def assignments_table(assignments: pd.DataFrame) -> pa.Table:
    """Return a run's assignments as rows of the current-assignment table.

    Raises
    ------
    DataError
        When a column is missing or a customer is named twice.
    """
    frame = assignments.rename(columns={assignments.columns[0]: "customer_id"})
    missing = [c for c in ("customer_id", "persona_id", "persona_name") if c not in frame]
    if missing:
        raise DataError(f"The assignments to publish lack the columns {', '.join(missing)}.")
    if frame["customer_id"].duplicated().any():
        dup = frame.loc[frame["customer_id"].duplicated(), "customer_id"].iloc[0]
        raise DataError(f"The assignments to publish name customer {dup!r} twice.")
    arrays = {}
    for column, kind in ASSIGNMENT_COLUMNS.items():
        if column not in frame:
            arrays[column] = pa.nulls(len(frame), kind)
        elif kind == pa.string():
            arrays[column] = pa.array(frame[column].astype(str).tolist(), kind)
        else:
            arrays[column] = pa.array(frame[column].to_numpy(), kind)
    return pa.table(arrays)

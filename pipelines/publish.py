"""Publish a run's personas to PostgreSQL, where a CRM reads them: one transaction per run.

``publish: postgresql://user@host:5432/crm?schema=personas`` in the config (or ``--publish
URL`` on ``train`` and ``score``) writes, once a run has succeeded, four tables to that
schema (``personas`` when the URL names none), creating them the first time:

``persona_runs``
    One row per published run: ``run_id`` (the MLflow run; a score run's id is
    ``score-`` and a hash of the model, the data and ``as_of``), ``kind`` (train or
    score), ``level``, ``as_of``, ``published_at``, ``source`` (the data source, without a
    password), ``model_uri``, ``n_customers``, ``n_entered``, ``n_moved``, ``n_left``.
``personas``
    One row per persona per run: ``run_id``, ``persona_id``, ``name``, ``size``,
    ``share``, ``nps``, ``nps_ci_low``, ``nps_ci_high``, ``respondents``,
    ``revenue_share``, ``is_focus``, ``is_at_risk``, ``unstable``, ``description`` and
    ``details`` (the persona as ``personas.json`` holds it, as ``jsonb``).
``persona_assignments``
    The current persona of each customer (the latest run's): ``customer_id``,
    ``persona_id``, ``persona_name``, ``confidence``, ``is_outlier``, ``since`` (when the
    customer entered this persona), ``run_id``, ``as_of``. Customers the latest run no
    longer has are not in it.
``persona_membership``
    The history: ``customer_id``, ``persona_id``, ``persona_name``, ``valid_from``,
    ``valid_to`` (NULL while the customer is still in the persona), ``run_id`` (the run
    that opened the row) and ``closed_by_run_id``. Times are the runs' ``as_of`` (the
    data's reference time), so "who moved from which persona to which, and when" is one
    self-join. A run that keeps a customer's persona id keeps the row open; a change
    closes it at the run's ``as_of`` and opens one for the new persona; a customer the run
    no longer has gets the row closed.

The ids are those the run wrote (``assignments.csv``): pseudonymized when
``privacy.pseudonymize_ids`` is on. Everything happens in one transaction, after the
rows are bulk-loaded (ADBC ingest, PostgreSQL's binary ``COPY``) into temporary tables:
a failed or interrupted publish leaves the tables as they were; publishing a run that is
already there changes nothing; two publishers of one schema take turns (an advisory
lock). A run whose ``as_of`` is earlier than the latest published one is refused: it would
rewrite history.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features import postgres
from features.contract import DataError
from features.sql import sql_name, sql_text, sql_time
from pipelines.publish_tables import (
    PERSONA_COLUMNS,
    assignments_table,
    ddl,
    personas_table,
)

__all__ = [
    "PublishResult",
    "publish",
    "publish_outputs",
    "publish_scores",
    "read_assignments",
    "score_run_id",
]

logger = logging.getLogger(__name__)

#: The schema the tables go to when the URL names none.
DEFAULT_SCHEMA = "personas"


@dataclass
class PublishResult:
    """What a publish did.

    Attributes
    ----------
    url : str
        Where (without a password).
    schema : str
        The schema written.
    run_id : str
        The run published.
    published : bool
        False when the run was already there (nothing changed).
    n_customers, n_entered, n_moved, n_left : int
        Customers published; of them, new to the tables, in another persona than before;
        customers the run no longer has.
    """

    url: str
    schema: str
    run_id: str
    published: bool
    n_customers: int = 0
    n_entered: int = 0
    n_moved: int = 0
    n_left: int = 0


def _lit(value) -> str:
    return "NULL" if value is None else sql_text(value)


def _timestamp(value) -> pd.Timestamp:
    """Return a time as UTC without zone (as the pipeline's ``as_of`` is)."""
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _stamp(ts: pd.Timestamp) -> str:
    return sql_time(ts)


def publish(
    url: str,
    *,
    run_id: str,
    personas: list[dict],
    assignments: pd.DataFrame,
    as_of,
    kind: str = "train",
    level: str = "customer",
    source: str | None = None,
    model_uri: str | None = None,
) -> PublishResult:
    """Write one run's personas, assignments and membership changes, in one transaction.

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/database?schema=personas`` (no password: libpq reads
        ``$PGPASSWORD`` or ``~/.pgpass``); the schema defaults to ``personas``.
    run_id : str
        The run; publishing it again changes nothing.
    personas : list of dict
        The persona table (``personas.json``): ``persona_id``, ``name``, ``size``,
        ``share``, ``nps``...
    assignments : pandas.DataFrame
        One row per customer (``assignments.csv``): the id first (``customer_id``, or
        ``account_id`` at level account), ``persona_id``, ``persona_name`` and, when
        present, ``confidence`` and ``is_outlier``.
    as_of : str or pandas.Timestamp
        The data's reference time: when membership rows open and close.
    kind : {"train", "score"}
        What published.
    level : {"customer", "account"}
        Whose personas.
    source : str, optional
        The data source, as logged (without a password).
    model_uri : str, optional
        The served model.

    Returns
    -------
    PublishResult
        What changed.

    Raises
    ------
    DataError
        When the URL is wrong (one paragraph, as for reading), the run is older than the
        latest published one, or the tables cannot be written.
    """
    target = postgres.parse_url(url, "publish", default_schema=DEFAULT_SCHEMA)
    s = sql_name(target.schema)
    run = _lit(run_id)
    when = _timestamp(as_of)
    stamp = _stamp(when)
    people = assignments_table(assignments)
    table = personas_table(personas)
    conn = postgres.connect(target, "publish the personas")
    try:
        with conn.cursor() as cur:
            key = int.from_bytes(hashlib.sha256(f"personas:{target.schema}".encode()).digest()[:7])
            cur.execute(f"SELECT pg_advisory_xact_lock({key})")  # publishers take turns
            for statement in ddl(s):
                cur.execute(statement)
            cur.execute(f"SELECT 1 FROM {s}.persona_runs WHERE run_id = {run}")
            if cur.fetchall():
                conn.rollback()
                logger.info(
                    "Run %s is already published to %s (schema %s); nothing changed.",
                    run_id,
                    target.shown,
                    target.schema,
                )
                return PublishResult(target.shown, target.schema, run_id, published=False)
            cur.execute(
                f"SELECT max(as_of), (array_agg(run_id ORDER BY as_of DESC))[1] "
                f"FROM {s}.persona_runs"
            )
            latest, latest_run = cur.fetchall()[0]
            if latest is not None and pd.Timestamp(latest) > when:
                raise DataError(
                    f"Run {run_id} (as_of {when}) is older than run {latest_run} "
                    f"(as_of {latest}) already published to {target.shown} (schema "
                    f"{target.schema}); publishing it would rewrite the membership history. "
                    "Publish runs in the order of their data."
                )
            cur.adbc_ingest("_publish_assignments", people, mode="create", temporary=True)
            cur.adbc_ingest("_publish_personas", table, mode="create", temporary=True)
            counts = _count(cur, s)
            cur.execute(
                f"INSERT INTO {s}.persona_runs (run_id, kind, level, as_of, source, model_uri, "
                "n_customers, n_entered, n_moved, n_left) VALUES "
                f"({run}, {_lit(kind)}, {_lit(level)}, {stamp}, {_lit(source)}, "
                f"{_lit(model_uri)}, {people.num_rows}, {counts['entered']}, {counts['moved']}, "
                f"{counts['left']})"
            )
            columns = ", ".join(PERSONA_COLUMNS)
            select = ", ".join(f"{c}::jsonb" if c == "details" else c for c in PERSONA_COLUMNS)
            cur.execute(
                f"INSERT INTO {s}.personas (run_id, {columns}) "
                f"SELECT {run}, {select} FROM _publish_personas"
            )
            _apply(cur, s, run, stamp)
        _commit(conn)
    except BaseException:
        _rollback(conn)
        raise
    finally:
        conn.close()
    logger.info(
        "Published run %s to %s (schema %s): %d customers, %d new, %d moved, %d left.",
        run_id,
        target.shown,
        target.schema,
        people.num_rows,
        counts["entered"],
        counts["moved"],
        counts["left"],
    )
    return PublishResult(
        target.shown,
        target.schema,
        run_id,
        published=True,
        n_customers=people.num_rows,
        n_entered=counts["entered"],
        n_moved=counts["moved"],
        n_left=counts["left"],
    )


def _count(cur, s: str) -> dict[str, int]:
    """Count who enters, moves and leaves (before `_apply` changes anything)."""
    cur.execute(
        "SELECT "
        "count(*) FILTER (WHERE m.customer_id IS NULL), "
        "count(*) FILTER (WHERE m.persona_id IS DISTINCT FROM a.persona_id "
        "AND m.customer_id IS NOT NULL) "
        f"FROM _publish_assignments a LEFT JOIN {s}.persona_membership m "
        "ON m.customer_id = a.customer_id AND m.valid_to IS NULL"
    )
    entered, moved = cur.fetchall()[0]
    cur.execute(
        f"SELECT count(*) FROM {s}.persona_membership m WHERE m.valid_to IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM _publish_assignments a WHERE a.customer_id = m.customer_id)"
    )
    (left,) = cur.fetchall()[0]
    return {"entered": int(entered), "moved": int(moved), "left": int(left)}


def _apply(cur, s: str, run: str, stamp: str) -> None:
    """Close, open and replace rows: the run's assignments become the current state."""
    cur.execute("CREATE INDEX ON _publish_assignments (customer_id)")
    cur.execute("ANALYZE _publish_assignments")
    # a customer in another persona, or gone: close the open row at this run's as_of
    cur.execute(
        f"UPDATE {s}.persona_membership m SET valid_to = {stamp}, closed_by_run_id = {run} "
        "WHERE m.valid_to IS NULL AND NOT EXISTS (SELECT 1 FROM _publish_assignments a "
        "WHERE a.customer_id = m.customer_id AND a.persona_id = m.persona_id)"
    )
    # a customer without an open row (new, or just closed): open one
    cur.execute(
        f"INSERT INTO {s}.persona_membership "
        "(customer_id, persona_id, persona_name, valid_from, valid_to, run_id) "
        f"SELECT a.customer_id, a.persona_id, a.persona_name, {stamp}, NULL, {run} "
        "FROM _publish_assignments a WHERE NOT EXISTS (SELECT 1 FROM "
        f"{s}.persona_membership m WHERE m.customer_id = a.customer_id AND m.valid_to IS NULL)"
    )
    cur.execute(f"DELETE FROM {s}.persona_assignments")
    cur.execute(
        f"INSERT INTO {s}.persona_assignments (customer_id, persona_id, persona_name, "
        "confidence, is_outlier, since, run_id, as_of) "
        "SELECT a.customer_id, a.persona_id, a.persona_name, a.confidence, a.is_outlier, "
        f"m.valid_from, {run}, {stamp} FROM _publish_assignments a JOIN "
        f"{s}.persona_membership m ON m.customer_id = a.customer_id AND m.valid_to IS NULL"
    )


def _commit(conn) -> None:
    try:
        conn.commit()
    except Exception as error:  # the driver's errors
        raise DataError(f"Publishing failed at the commit: {error}") from None


def _rollback(conn) -> None:
    try:
        conn.rollback()
    except Exception:  # a broken connection: the server rolls back on its own
        logger.debug("rollback failed; the server discards the transaction", exc_info=True)


def read_assignments(path: str | Path) -> pd.DataFrame:
    """Read an assignments CSV as written: ids as text (``007`` stays ``007``).

    Parameters
    ----------
    path : str or Path
        ``assignments.csv`` of a train run, or the CSV of a score run.

    Returns
    -------
    pandas.DataFrame
        The id column (first) as text, ``persona_id`` whole, ``confidence`` a number,
        ``is_outlier`` a boolean.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["persona_id"] = frame["persona_id"].astype(int)
    if "confidence" in frame:
        frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce")
    if "is_outlier" in frame:
        frame["is_outlier"] = frame["is_outlier"].str.lower().isin(("true", "1"))
    return frame


def _read_outputs(folder: Path) -> tuple[list[dict], pd.DataFrame, dict]:
    personas = json.loads((folder / "personas.json").read_text())
    assignments = read_assignments(folder / "assignments.csv")
    quality = json.loads((folder / "data_quality.json").read_text())
    return personas, assignments, quality


def publish_outputs(
    cfg: dict, *, output: str | Path, run_id: str, model_uri: str | None = None
) -> PublishResult | None:
    """Publish a train run's written outputs when the config says where (``publish``).

    The train recipe's hook: call it once the outputs are in place and the run has
    succeeded. It publishes what the run wrote (``personas.json``, ``assignments.csv``,
    ``data_quality.json``'s ``as_of`` and source), so pseudonymized ids stay so.

    Parameters
    ----------
    cfg : dict
        The run configuration (``publish``: a URL, or None to do nothing; ``level``).
    output : str or Path
        The run's output folder.
    run_id : str
        The MLflow run id.
    model_uri : str, optional
        The served model's URI.

    Returns
    -------
    PublishResult or None
        None when ``publish`` is not set.
    """
    if not cfg.get("publish"):
        return None
    personas, assignments, quality = _read_outputs(Path(output))
    return publish(
        cfg["publish"],
        run_id=run_id,
        personas=personas,
        assignments=assignments,
        as_of=quality["as_of"],
        kind="train",
        level=cfg.get("level", "customer"),
        source=quality.get("source"),
        model_uri=model_uri,
    )


def score_run_id(model_uri: str, fingerprint: str, as_of) -> str:
    """Return the id of a score run: the same model on the same data is the same run."""
    text = f"{model_uri}|{fingerprint}|{pd.Timestamp(as_of).isoformat()}"
    return "score-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def publish_scores(
    cfg: dict,
    *,
    output: str | Path,
    model_uri: str,
    as_of,
    fingerprint: str,
    names: dict[int, str] | None = None,
    source: str | None = None,
) -> PublishResult | None:
    """Publish a score run's written assignments when the config says where (``publish``).

    The score recipe's hook: call it once the CSV is in place. The personas table gets the
    scored sizes and shares (no NPS: scoring reads no answers to profile).

    Parameters
    ----------
    cfg : dict
        The configuration (``publish``, ``level``).
    output : str or Path
        The CSV the score run wrote.
    model_uri : str
        The served model used; a registry alias (``models:/personas@champion``) is
        published as the version it points at.
    as_of : str or pandas.Timestamp
        The scored data's reference time (`features.LoadedData.as_of`).
    fingerprint : str
        The scored data's fingerprint (`features.LoadedData.fingerprint`).
    names : dict of int to str, optional
        Persona id -> name (default: the names in the CSV).
    source : str, optional
        The data source (without a password).

    Returns
    -------
    PublishResult or None
        None when ``publish`` is not set.
    """
    if not cfg.get("publish"):
        return None
    from pipelines.serving import resolve_model_uri  # MLflow only here, and only to publish

    model_uri = resolve_model_uri(model_uri, cfg)  # an alias moves: the run is its version
    assignments = read_assignments(output)
    sizes = assignments.groupby("persona_id")["persona_name"].agg(["size", "first"])
    total = max(len(assignments), 1)
    personas = [
        {
            "persona_id": int(pid),
            "name": (names or {}).get(int(pid), row["first"]),
            "size": int(row["size"]),
            "share": row["size"] / total,
            "nps": None,
        }
        for pid, row in sizes.iterrows()
    ]
    return publish(
        cfg["publish"],
        run_id=score_run_id(model_uri, fingerprint, as_of),
        personas=personas,
        assignments=assignments,
        as_of=as_of,
        kind="score",
        level=cfg.get("level", "customer"),
        source=source,
        model_uri=model_uri,
    )

"""The ``personas`` command line.

Exit status: 0 on success; 1 on bad input or a failed check, with a one-paragraph
message and no traceback (``--debug`` shows it); 2 on bad usage.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import warnings
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["EngineChoice", "app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Discover customer segments and turn them into personas with their NPS.",
)
# Markup off: messages, paths, column names and persona names are the user's text, and
# rich would take "[spark]" in `pip install "personas[spark]"` for a style and drop it.
# Styled words go through `Text` instead (see `_error`).
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, markup=False)
_state = {"debug": False}
logger = logging.getLogger("personas")


class EngineChoice(StrEnum):
    """The values of ``train --engine``.

    They are `pipelines.config.ENGINES`, spelled out here so the command line starts
    without importing the pipeline; a test keeps the two equal.
    """

    duckdb = "duckdb"
    spark = "spark"


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    # Third-party chatter only with --debug: MLflow's pickling and download notices and
    # progress bars, and the deprecation warnings of the libraries underneath.
    quiet = logging.DEBUG if debug else logging.ERROR
    for noisy in ("mlflow", "alembic", "numba", "matplotlib", "urllib3", "git", "py4j"):
        logging.getLogger(noisy).setLevel(quiet)
    if not debug:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        for module in ("mlflow", "sklearn", "umap", "hdbscan", "numba", "pandas", "pyspark"):
            warnings.filterwarnings("ignore", module=module)


def _error(message: str) -> None:
    """Print ``error: <message>`` to stderr, the message as written (no markup)."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


def _friendly(func):
    """Turn known errors into a one-paragraph message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from features import DataError
        from pipelines.config import ConfigError

        try:
            return func(*args, **kwargs)
        except (DataError, ConfigError) as error:
            if _state["debug"]:
                raise
            _error(str(error))
            raise typer.Exit(1) from None
        except typer.BadParameter:
            raise  # a usage error: Typer prints it with the usage line, exit status 2
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as error:  # an unexpected failure: still no traceback by default
            if _state["debug"]:
                raise
            _error(
                f"unexpected {type(error).__name__}: {error}. "
                "Run again with --debug for the traceback."
            )
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    _state["debug"] = debug
    _setup_logging(debug)


@app.command()
@_friendly
def demo(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the demo tables to."),
    customers: int = typer.Option(5000, "--customers", min=50, help="Number of customers."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    file_format: str = typer.Option("csv", "--format", help="csv or parquet."),
    b2b: bool = typer.Option(
        False, "--b2b", help="Accounts with several people each, with roles (level: account)."
    ),
    accounts: int = typer.Option(500, "--accounts", min=10, help="Number of accounts (--b2b)."),
) -> None:
    """Write a realistic demo data folder with planted personas."""
    from pipelines.demo import write_demo
    from pipelines.demo.accounts import write_b2b_demo

    if file_format not in ("csv", "parquet"):
        raise typer.BadParameter("--format must be csv or parquet")
    if b2b:
        rows = write_b2b_demo(out_dir, n_accounts=accounts, seed=seed, file_format=file_format)
    else:
        rows = write_demo(out_dir, n_customers=customers, seed=seed, file_format=file_format)
    for table, n in rows.items():
        out.print(f"{table:<20} {n:>12,} rows")
    out.print(f"Demo data written to {out_dir}")


def _quality_table(quality: dict) -> Table:
    table = Table(title=f"Data quality (as of {quality.get('as_of', '?')})")
    for col in ("table", "rows", "used", "invalid", "unknown customer", "after as_of", "range"):
        table.add_column(col, justify="right" if col not in ("table", "range") else "left")
    for name, t in quality["tables"].items():
        table.add_row(
            name,
            f"{t['rows']:,}",
            f"{t.get('rows_used', 0):,}",
            f"{t['rows_invalid']:,}",
            f"{t.get('unknown_customer_rows', 0):,}",
            f"{t.get('rows_after_as_of', 0):,}",
            f"{(t.get('first') or '')[:10]} – {(t.get('last') or '')[:10]}",
        )
    return table


#: What ``--data`` may name, as each command's help says it.
_DATA = "Data folder, DuckDB file, or postgresql://user@host:port/db?schema=<schema>"
_PUBLISH = (
    "After the run succeeds, publish the personas, assignments and membership history to "
    "this PostgreSQL schema: postgresql://user@host:port/db?schema=<schema> (default: the "
    "config's publish). Password: $PGPASSWORD or ~/.pgpass."
)


@app.command()
@_friendly
def validate(
    data: str = typer.Option(..., "--data", help=f"{_DATA}."),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file."),
) -> None:
    """Check the data against the contract and print the data-quality summary."""
    from pipelines.config import load_config
    from pipelines.run import load

    cfg = load_config(config)
    loaded = load(data, cfg)  # pipelines.run: the same checks as train, without MLflow
    try:
        out.print(_quality_table(loaded.quality))
        for table, info in loaded.quality["tables"].items():
            if info["pii_columns_dropped"]:
                dropped = ", ".join(info["pii_columns_dropped"])
                out.print(f"{table}: personal-data columns ignored: {dropped}")
        for problem in loaded.quality["problems"]:
            out.print(f"quarantined: {problem}")
        if cfg["level"] == "account":  # every person in an account, as train will need
            from features.accounts import people
            from features.engine import Engine

            members = people(Engine(loaded), cfg["b2b"]["role_column"])
            n_roles = int(members["role"].notna().sum())
            out.print(
                f"level account: {members['account_id'].nunique():,} accounts; "
                f"{n_roles:,} of {len(members):,} people have a role"
            )
        out.print(f"OK: {loaded.n_customers:,} customers; tables: {', '.join(loaded.tables)}")
    finally:
        loaded.con.close()


@app.command()
@_friendly
def train(
    data: str = typer.Option(
        ...,
        "--data",
        help=f"{_DATA}, or spark:<database> (metastore tables; --engine spark).",
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file."),
    output: Path | None = typer.Option(None, "--output", help="Output folder."),
    engine: EngineChoice | None = typer.Option(
        None,
        "--engine",
        help="Where the features are computed (default: the config's engine, duckdb).",
    ),
    publish: str | None = typer.Option(None, "--publish", help=_PUBLISH),
) -> None:
    """Features -> model -> personas -> report, tracked as one MLflow run."""
    from models.nps import format_nps
    from pipelines.config import load_config
    from pipelines.train import train as run_train

    cfg = load_config(config, engine=engine.value if engine else None, publish=publish)
    result = run_train(data, cfg=cfg, output=output)
    table = Table(title="Personas")
    for col in (
        "id",
        "persona",
        "customers" if result.level == "customer" else "accounts",
        "share",
        "revenue share",
        "NPS",
        "95% interval",
        "respondents",
    ):
        table.add_column(col, justify="left" if col == "persona" else "right")
    for p in result.personas:
        flags = [
            f
            for f, on in (
                ("focus", p.get("is_focus")),
                ("at risk", p.get("is_at_risk")),
                ("unstable", p.get("unstable")),
            )
            if on
        ]
        name = (p.get("custom_name") or p["name"]) + (f" ({', '.join(flags)})" if flags else "")
        nps = format_nps(p["nps"])
        ci = "" if p["nps"] is None else format_nps(None, p["nps_ci_low"], p["nps_ci_high"])
        revenue = "—" if p["revenue_share"] is None else f"{100 * p['revenue_share']:.0f}%"
        table.add_row(
            str(p["persona_id"]),
            name,
            f"{p['size']:,}",
            f"{100 * p['share']:.0f}%",
            revenue,
            nps,
            ci,
            f"{p['respondents']:,}",
        )
    out.print(table)
    from pipelines.report.segmentation import continuum_note

    if note := continuum_note(result.segmentation):
        out.print(f"Note: {note}")
    if result.people is not None:
        out.print(f"People in their account's persona: {result.output / 'people_assignments.csv'}")
    out.print(f"Report: {result.output / 'report.html'} (summary: report.md)")
    out.print(f"Outputs: {result.output}")
    out.print(f"MLflow run: {result.run_id}")


@app.command()
@_friendly
def score(
    data: str = typer.Option(..., "--data", help=f"{_DATA}."),
    model: str | None = typer.Option(
        None, "--model", help="Model URI; default models:/<tracking.model_name>@champion."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        help="CSV file to write; with --engine spark also a folder (a Parquet dataset) or "
        "spark:<database>.<table> (a metastore table), written by the executors.",
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file."),
    publish: str | None = typer.Option(None, "--publish", help=_PUBLISH),
    engine: EngineChoice | None = typer.Option(
        None,
        "--engine",
        help="Where the features are computed and the customers placed (default: duckdb).",
    ),
) -> None:
    """Assign customers to the personas of a trained model."""
    from pipelines.score import score as run_score

    result = run_score(
        data,
        model=model,
        output=output,
        config=config,
        publish=publish,
        engine=engine.value if engine else None,
    )
    if "customers" in result:  # placed on the cluster: one row per persona
        counts = result.set_index("persona_name")["customers"].sort_values(ascending=False)
    else:
        counts = result["persona_name"].value_counts()
    for name, n in counts.items():
        out.print(f"{n:>10,}  {name}")
    what = "accounts" if result.columns[0] == "account_id" else "customers"
    out.print(f"Scored {int(counts.sum()):,} {what} -> {output}")


@app.command()
@_friendly
def ui(
    port: int = typer.Option(5000, "--port", help="Port to listen on (127.0.0.1 only)."),
    config: Path | None = typer.Option(None, "--config", help="YAML settings file."),
) -> None:
    """Open the MLflow UI on the local tracking store, bound to 127.0.0.1."""
    from pipelines.config import load_config
    from pipelines.tracking import tracking_uri

    uri = tracking_uri(load_config(config))
    out.print(f"MLflow UI for {uri} at http://127.0.0.1:{port} (Ctrl-C to stop)")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    raise typer.Exit(subprocess.call(cmd))


def _terminate(signum, frame) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so a killed run cleans up and is marked failed."""
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def main() -> None:
    """Entry point of the ``personas`` console command."""
    signal.signal(signal.SIGTERM, _terminate)
    app()

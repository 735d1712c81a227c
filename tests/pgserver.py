"""A throwaway PostgreSQL server for the tests and the benchmark.

It runs Debian's server binaries (``/usr/lib/postgresql/<version>/bin``, package
``postgresql``; `make test` installs it when missing) on a free local port, with its data in
a temporary folder that `stop` removes. ``initdb`` refuses to run as root, so as root the
server runs as the ``postgres`` user (else ``nobody``) and its folder belongs to that user.
The server asks for a password (SCRAM): the tests check that it never leaks.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["PgServer", "bin_dir", "connect", "create_database", "load_folder", "password", "start"]

#: The contract tables a demo folder holds.
_TABLES = (
    "customers",
    "transactions",
    "usage_events",
    "engagement_events",
    "feedback",
    "support_tickets",
)


def bin_dir() -> Path | None:
    """Return the folder of the newest installed server's binaries, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PgServer:
    """A running throwaway server.

    Attributes
    ----------
    folder : Path
        Its temporary folder (data, socket, log).
    port : int
        The port it listens on, on 127.0.0.1.
    user : str
        The superuser name.
    password : str
        The superuser's password (give it as ``PGPASSWORD``, never in a URL).
    bin : Path
        The server binaries.
    """

    folder: Path
    port: int
    user: str
    password: str
    bin: Path
    _run_as: str | None = None

    def url(self, database: str = "postgres", **params: str) -> str:
        """Return a ``postgresql://`` URL of a database, without the password."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )

    def env(self) -> dict[str, str]:
        """Return the process environment with ``PGPASSWORD`` set."""
        return {**os.environ, "PGPASSWORD": self.password}

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        _run(
            self,
            [str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def _run(server: PgServer, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if server._run_as:
        cmd = ["runuser", "-u", server._run_as, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


def start(user: str = "personas") -> PgServer:
    """Initialise and start a server in a new temporary folder.

    Parameters
    ----------
    user : str
        Name of the superuser.

    Returns
    -------
    PgServer
        The running server.

    Raises
    ------
    RuntimeError
        When the binaries are missing or the server does not start (the message quotes
        its log).
    """
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError(
            "no PostgreSQL server binaries (initdb) found; as root: apt-get install -y postgresql"
        )
    folder = Path(tempfile.mkdtemp(prefix="personas-pg-"))
    run_as = None
    if os.geteuid() == 0:  # initdb refuses root: the server runs as an unprivileged user
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            run_as = name
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            break
    server = PgServer(folder, _free_port(), user, secrets.token_hex(12), binaries, run_as)
    pwfile = folder / "pw"
    pwfile.write_text(server.password)
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    pwfile.chmod(0o600)
    try:
        _run(
            server,
            [
                str(binaries / "initdb"),
                "-D",
                str(folder / "data"),
                "-U",
                user,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )
        pwfile.unlink()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off"
        )
        _run(
            server,
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(folder / "data"),
                "-l",
                str(folder / "log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        log = (folder / "log").read_text()[-2000:] if (folder / "log").exists() else ""
        output = getattr(error, "stderr", "") or ""
        server.stop()
        raise RuntimeError(f"the PostgreSQL server did not start: {output} {log}") from error
    return server


def connect(server: PgServer, database: str = "postgres", autocommit: bool = False):
    """Return an ADBC connection to a database of the server, as its superuser."""
    import adbc_driver_postgresql.dbapi as pg

    with password(server.password):
        return pg.connect(server.url(database), autocommit=autocommit)


@contextmanager
def password(secret: str) -> Iterator[None]:
    """Set ``PGPASSWORD`` for the block (libpq reads it when a connection opens)."""
    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = secret
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = old


def create_database(server: PgServer, name: str) -> None:
    """Create a database (dropped first when it exists)."""
    with connect(server, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')


def _ingest(conn, table: pa.Table, schema: str, name: str) -> None:
    """Create ``schema.name`` from an Arrow table (large strings as text)."""
    table = table.replace_schema_metadata(None)
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
        for f in table.schema
    ]
    table = table.cast(pa.schema(fields))
    with conn.cursor() as cur:
        cur.adbc_ingest(name, table, mode="create", db_schema_name=schema)


def load_folder(
    server: PgServer,
    database: str,
    folder: Path,
    schema: str,
    names: dict[str, str] | None = None,
) -> dict[str, int]:
    """Load a demo folder's tables (Parquet or CSV) into a new schema; return their rows.

    Parameters
    ----------
    server : PgServer
        The server.
    database : str
        The database.
    folder : Path
        A folder written by ``personas demo`` (``--format parquet`` keeps the types).
    schema : str
        The schema to create (dropped first when it exists).
    names : dict of str to str, optional
        Contract table -> the table name to create (default the contract name).

    Returns
    -------
    dict of str to int
        Rows per table.
    """
    import pyarrow.csv as pacsv

    names = names or {}
    rows = {}
    with connect(server, database) as conn:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute(f'CREATE SCHEMA "{schema}"')
        for table in _TABLES:
            path = next(
                (folder / f"{table}{s}" for s in (".parquet", ".csv")
                 if (folder / f"{table}{s}").exists()),
                None,
            )  # fmt: skip
            if path is None:
                continue
            data = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
            _ingest(conn, data, schema, names.get(table, table))
            rows[table] = data.num_rows
        conn.commit()
    return rows

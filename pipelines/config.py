"""The run configuration: defaults from ``conf/default.yaml``, overridden by a user's file.

Validated once, at start-up: an unknown key or a value of the wrong kind stops the run
before any data is read.
"""

from __future__ import annotations

import copy
import difflib
import urllib.parse
from pathlib import Path

import yaml

from features.accounts import ACCOUNT_NPS
from features.builders import FAMILIES
from features.contract import TABLES

__all__ = ["DEFAULT_CONFIG", "ENGINES", "PROJ_ROOT", "ConfigError", "load_config"]

#: The repository root when running from a checkout, else the working directory.
PROJ_ROOT = (
    Path(__file__).resolve().parents[1]
    if (Path(__file__).resolve().parents[1] / "pyproject.toml").exists()
    else Path.cwd()
)
DEFAULT_CONFIG = Path(__file__).with_name("conf") / "default.yaml"

# Sections whose keys are the user's own (table names, free mappings): not checked.
_FREE = {"columns", "overrides", "influence", "conf", "tables"}

#: The engines that can compute the features (``engine:`` in the config).
ENGINES = ("duckdb", "spark")


class ConfigError(ValueError):
    """The configuration is invalid; the message is meant for the user."""


def _merge(base: dict, override: dict, path: str, source: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            close = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{source}: unknown setting {where!r}.{hint} Known settings here: "
                f"{', '.join(map(str, base))}."
            )
        if isinstance(base[key], dict) and key not in _FREE:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {where!r} should be a mapping, got {value!r}.")
            out[key] = _merge(base[key], value, f"{where}.", source)
        else:
            out[key] = value
    return out


def _check(cfg: dict, source: str) -> None:
    m = cfg["model"]
    ints = {
        "seed": cfg["seed"],
        "model.k_min": m["k_min"],
        "model.k_max": m["k_max"],
        "model.n_init": m["n_init"],
        "model.sample_size": m["sample_size"],
        "features.window_days": cfg["features"]["window_days"],
        "features.trend_days": cfg["features"]["trend_days"],
    }
    for key, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{source}: {key} should be a whole number >= 0, got {value!r}.")
    reals = {
        "model.clip": (m["clip"], 0, None),
        "privacy.min_persona_size": (cfg["privacy"]["min_persona_size"], 0, None),
        "model.tie_tolerance": (m["tie_tolerance"], 0, None),
        "model.outlier_confidence": (m["outlier_confidence"], 0, 1),
        "model.min_stability": (m["min_stability"], 0, 1),
        "model.outlier_score": (m["outlier_score"], 0, 1),
        "model.family_margin": (m["family_margin"], 0, None),
        "model.unstable_below": (m["unstable_below"], 0, 1),
        "clv.grace_cycles": (cfg["clv"]["grace_cycles"], 0, None),
        "profile.ci_level": (cfg["profile"]["ci_level"], 0, 1),
        "profile.min_trait_effect": (cfg["profile"]["min_trait_effect"], 0, None),
        "validation.max_unknown_share": (cfg["validation"]["max_unknown_share"], 0, 1),
    }
    for key, (value, low, high) in reals.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if (
            not ok
            or value < low
            or (high is not None and value > high)
            or (key == "profile.ci_level" and value in (0, 1))
        ):
            bounds = f"from {low} to {high}" if high is not None else f">= {low}"
            raise ConfigError(f"{source}: {key} should be a number {bounds}, got {value!r}.")
    if not 2 <= m["k_min"] <= m["k_max"]:
        raise ConfigError(
            f"{source}: need 2 <= model.k_min <= model.k_max, got k_min={m['k_min']}, "
            f"k_max={m['k_max']}."
        )
    if cfg["validation"]["on_error"] not in ("fail", "quarantine"):
        raise ConfigError(
            f"{source}: validation.on_error should be 'fail' or 'quarantine', got "
            f"{cfg['validation']['on_error']!r}."
        )
    for key, allowed in (
        ("noise", ("nearest", "unassigned")),
        ("density_space", ("umap", "pca", "scaled")),
        ("lens", ("both", "needs", "value")),
    ):
        if m[key] not in allowed:
            raise ConfigError(
                f"{source}: model.{key} should be one of {', '.join(allowed)}; got {m[key]!r}."
            )
    if cfg["clv"]["model"] not in ("auto", "bgnbd", "subscription"):
        raise ConfigError(
            f"{source}: clv.model should be one of auto, bgnbd, subscription; got "
            f"{cfg['clv']['model']!r}."
        )
    weights = m["lens_weights"]
    if set(weights) - {"value", "needs"} or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in weights.values()
    ):
        raise ConfigError(
            f"{source}: model.lens_weights should map value and needs to numbers >= 0, got "
            f"{weights!r}."
        )
    # clv: built after the families (pipelines.value); accounts: people count, influence mix
    families = [*FAMILIES, "clv", "accounts"]
    unknown = [f for f in m["families"] if f not in families]
    if unknown or not m["families"]:
        raise ConfigError(
            f"{source}: model.families should list some of {', '.join(families)}; "
            f"got {m['families']!r}."
        )
    _check_b2b(cfg, source)
    _check_engine(cfg, source)
    _check_postgres(cfg, source)
    if not isinstance(cfg["columns"], dict) or not all(
        isinstance(v, dict) for v in cfg["columns"].values()
    ):
        raise ConfigError(
            f"{source}: columns should map table -> {{contract column: your column}}, got "
            f"{cfg['columns']!r}."
        )


def _check_b2b(cfg: dict, source: str) -> None:
    """Check ``level`` and the ``b2b`` section."""
    if cfg["level"] not in ("customer", "account"):
        raise ConfigError(f"{source}: level should be customer or account, got {cfg['level']!r}.")
    b = cfg["b2b"]
    if b["account_nps"] not in ACCOUNT_NPS:
        raise ConfigError(
            f"{source}: b2b.account_nps should be one of {', '.join(ACCOUNT_NPS)}, got "
            f"{b['account_nps']!r}."
        )
    influence = b["influence"]
    if not isinstance(influence, dict) or not all(
        isinstance(w, list) and all(isinstance(x, str) for x in w) for w in influence.values()
    ):
        raise ConfigError(
            f"{source}: b2b.influence should map each level to a list of words, got {influence!r}."
        )
    levels = [*influence, b["other_roles"]]
    for key in ("decision_makers", "end_users"):
        value = b[key]
        if not isinstance(value, list) or not value or any(v not in levels for v in value):
            raise ConfigError(
                f"{source}: b2b.{key} should list some of the levels {', '.join(map(str, levels))}"
                f"; got {value!r}."
            )
    if set(b["decision_makers"]) & set(b["end_users"]):
        raise ConfigError(
            f"{source}: b2b.decision_makers and b2b.end_users share levels "
            f"{sorted(set(b['decision_makers']) & set(b['end_users']))}; the gap needs two sides."
        )
    gap = b["min_gap"]
    if not isinstance(gap, int | float) or isinstance(gap, bool) or gap < 0:
        raise ConfigError(f"{source}: b2b.min_gap should be a number >= 0, got {gap!r}.")


def _check_engine(cfg: dict, source: str) -> None:
    if cfg["engine"] not in ENGINES:
        raise ConfigError(
            f"{source}: engine should be one of {', '.join(ENGINES)}; got {cfg['engine']!r}."
        )
    spark = cfg["spark"]
    for key in ("master", "app_name"):
        if not isinstance(spark[key], str) or not spark[key].strip():
            raise ConfigError(
                f"{source}: spark.{key} should be a non-empty text, got {spark[key]!r}."
            )
    if spark["staging_dir"] is not None and not isinstance(spark["staging_dir"], str):
        raise ConfigError(
            f"{source}: spark.staging_dir should be a folder path or null, got "
            f"{spark['staging_dir']!r}."
        )
    if not isinstance(spark["conf"], dict) or not all(isinstance(k, str) for k in spark["conf"]):
        raise ConfigError(
            f"{source}: spark.conf should map Spark setting names to values "
            f"({{spark.driver.memory: 8g}}), got {spark['conf']!r}."
        )
    tables = spark["tables"]
    if (
        not isinstance(tables, dict)
        or set(tables) - set(TABLES)
        or not all(isinstance(v, str) and v.strip() for v in tables.values())
    ):
        raise ConfigError(
            f"{source}: spark.tables should map contract tables ({', '.join(TABLES)}) to "
            f"metastore tables ({{transactions: sales.invoices}}), got {tables!r}."
        )


def _check_postgres(cfg: dict, source: str) -> None:
    """Check ``tables``, ``publish`` and the URLs that may hold a password (they must not)."""
    tables = cfg["tables"]
    if (
        not isinstance(tables, dict)
        or set(tables) - set(TABLES)
        or not all(isinstance(v, str) and v.strip() for v in tables.values())
    ):
        raise ConfigError(
            f"{source}: tables should map contract tables ({', '.join(TABLES)}) to your "
            f"tables' names ({{transactions: invoices}}), got {tables!r}."
        )
    publish = cfg["publish"]
    if publish is not None and (
        not isinstance(publish, str) or not publish.startswith(("postgresql://", "postgres://"))
    ):
        raise ConfigError(
            f"{source}: publish should be a PostgreSQL URL "
            f"(postgresql://user@host:5432/database?schema=personas) or null, got {publish!r}."
        )
    for key, url in (("publish", publish), ("tracking.uri", cfg["tracking"]["uri"])):
        if isinstance(url, str) and urllib.parse.urlsplit(url).password is not None:
            raise ConfigError(
                f"{source}: {key} holds a password; remove it from the URL and give it in "
                "$PGPASSWORD or ~/.pgpass (libpq's conventions), so it is never written in a "
                "file, a log or the MLflow store."
            )


def load_config(path: str | Path | None = None, **overrides) -> dict:
    """Read the defaults, apply a user's YAML file and keyword overrides, and validate.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file naming only the settings that differ from the defaults.
    **overrides
        Top-level settings that win over both (``as_of="2026-06-30"``).

    Returns
    -------
    dict
        The full configuration.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or names an unknown or invalid setting.
    """
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    source = "the default config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.")
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(user, dict):
            raise ConfigError(
                f"{path} should hold a mapping of settings, got {type(user).__name__}."
            )
        cfg = _merge(cfg, user, "", source)
    cfg = _merge(cfg, {k: v for k, v in overrides.items() if v is not None}, "", "the command line")
    if cfg["as_of"] is not None:
        cfg["as_of"] = str(cfg["as_of"])
    _check(cfg, source)
    return cfg

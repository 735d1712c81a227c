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

# Sections whose keys are the user's own (table names, free mappings): not checked here.
_FREE = {"columns", "overrides", "influence", "conf", "tables", "family_weights"}

#: The comparisons an action rule can make (`models.actions`; a test keeps the two equal).
ACTION_OPERATORS = ("==", "!=", ">=", "<=", ">", "<")

#: The kinds of key-driver model (``drivers.kind``; `models.drivers`).
DRIVER_KINDS = ("score", "promoter")

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


#: Settings that are whole numbers, with their least value.
_WHOLE = {
    "seed": 0,
    "model.k_min": 0,  # and 2 <= k_min <= k_max, checked below
    "model.k_max": 0,
    "model.n_init": 1,
    "model.sample_size": 10,
    "model.stability_resamples": 1,
    "model.stability_sample": 10,
    "model.umap.n_components": 1,
    "model.umap.n_neighbors": 2,
    "model.umap.sample_size": 10,
    "features.window_days": 0,
    "features.trend_days": 0,
    "features.mix_max_features": 1,
    "features.mix_themes": 1,
    "features.max_categories": 1,
    "validation.examples": 1,
    "clv.n_periods": 1,
    "profile.top_traits": 0,
    "profile.min_respondents": 1,
    "profile.top_drivers": 0,
    "focus.max_focus": 0,
    "drivers.n_splits": 2,
    "drivers.n_repeats": 1,
    "drivers.sample_size": 10,
    "themes.top_terms": 0,
    "themes.top_topics": 0,
    "themes.examples": 0,
    "themes.min_count": 1,
    "themes.max_comments": 1,
    "report.map_sample": 1,
}

#: Settings that are numbers: (least, greatest or None, whether the bounds are excluded).
_NUMBERS = {
    "model.clip": (0, None, False),
    "privacy.min_persona_size": (0, None, False),
    "model.tie_tolerance": (0, None, False),
    "model.outlier_confidence": (0, 1, False),
    "model.min_stability": (0, 1, False),
    "model.outlier_score": (0, 1, False),
    "model.family_margin": (0, None, False),
    "model.unstable_below": (0, 1, False),
    "model.max_valley": (0, 1, False),
    "model.min_valley_z": (0, None, False),
    "model.min_distance": (0, None, False),
    "model.min_share": (0, 1, True),
    "model.min_agreement": (0, 1, False),
    "model.umap.min_dist": (0, None, False),
    "validation.max_unknown_share": (0, 1, False),
    "validation.extreme_ratio": (0, None, True),
    "clv.grace_cycles": (0, None, False),
    "clv.horizon_weeks": (0, None, True),
    "clv.discount_rate": (-1, None, True),
    "clv.penalizer": (0, None, False),
    "profile.ci_level": (0, 1, True),
    "profile.alpha": (0, 1, True),
    "profile.min_trait_effect": (0, None, False),
    "focus.min_value_index": (0, None, False),
    "focus.max_p_alive": (0, 1, False),
    "themes.min_lift": (0, None, False),
    "resegment.min_similarity": (0, 1, False),
    "resegment.gates.min_stability": (0, 1, False),
    "resegment.gates.max_outlier_share": (0, 1, False),
    "resegment.gates.min_match_quality": (0, 1, False),
}


def _setting(cfg: dict, key: str):
    """Return the value of a dotted setting (``model.umap.n_neighbors``)."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_numbers(cfg: dict, source: str) -> None:
    """Check the settings of `_WHOLE` and `_NUMBERS`: type and range."""
    for key, low in _WHOLE.items():
        value = _setting(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{source}: {key} should be a whole number >= {low}, got {value!r}.")
    for key, (low, high, excluded) in _NUMBERS.items():
        value = _setting(cfg, key)
        if excluded:
            inside = _is_number(value) and low < value and (high is None or value < high)
            bounds = f"> {low}" if high is None else f"between {low} and {high}, excluded"
        else:
            inside = _is_number(value) and low <= value and (high is None or value <= high)
            bounds = f">= {low}" if high is None else f"from {low} to {high}"
        if not inside:
            raise ConfigError(f"{source}: {key} should be a number {bounds}, got {value!r}.")


def _check(cfg: dict, source: str) -> None:
    m = cfg["model"]
    _check_numbers(cfg, source)
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
        ("criterion", ("valley", "silhouette")),
        ("metric", ("pooled", "euclidean")),
        ("attributes", ("auto", "always", "never")),
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
    if "feedback" in m["families"]:
        raise ConfigError(
            f"{source}: model.families lists feedback, which never shapes the personas: a "
            "persona's NPS is an outcome of who its customers are and what they do, so it "
            "is measured per persona, not clustered on. Remove feedback from model.families."
        )
    weights = m["family_weights"]
    if (
        not isinstance(weights, dict)
        or set(weights) - set(families)
        or not all(_is_number(v) and v >= 0 for v in weights.values())
    ):
        raise ConfigError(
            f"{source}: model.family_weights should map families ({', '.join(families)}) to "
            f"numbers >= 0, e.g. {{usage_mix: 2.0}}; got {weights!r}."
        )
    _check_density(m, source)
    _check_force(m, source)
    _check_value_settings(cfg, source)
    _check_actions(cfg["actions"], source)
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


def _check_density(m: dict, source: str) -> None:
    """Check ``model.density_shares``: a list of shares of customers between 0 and 1."""
    shares = m["density_shares"]
    if not isinstance(shares, list) or not all(_is_number(s) and 0 < s < 1 for s in shares):
        raise ConfigError(
            f"{source}: model.density_shares should list the smallest persona's share of "
            f"customers for each HDBSCAN candidate, numbers between 0 and 1 excluded (e.g. "
            f"[0.02, 0.05, 0.1]), or [] for none; got {shares!r}."
        )


def _check_force(m: dict, source: str) -> None:
    """Check that ``model.force`` names a candidate the model search will fit.

    The names are those of `models.selection`: ``kmeans_k<k>`` for each k from
    ``model.k_min`` to ``model.k_max``, and ``hdbscan_<density_space>_<share>`` for each
    share of ``model.density_shares``.
    """
    force = m["force"]
    if force is None:
        return
    kmeans = [f"kmeans_k{k}" for k in range(m["k_min"], m["k_max"] + 1)]
    density = [f"hdbscan_{m['density_space']}_{share:g}" for share in m["density_shares"]]
    if force in kmeans + density:
        return
    forms = f"kmeans_k<k> with k from model.k_min to model.k_max ({kmeans[0]} to {kmeans[-1]})"
    if density:
        forms += (
            ", or hdbscan_<space>_<share> with model.density_space and a share of "
            f"model.density_shares ({', '.join(density)})"
        )
    else:
        forms += "; hdbscan_<space>_<share> needs the share in model.density_shares, which is empty"
    raise ConfigError(f"{source}: model.force should name a candidate: {forms}; got {force!r}.")


def _check_value_settings(cfg: dict, source: str) -> None:
    """Check the settings the value lens, the support features and the drivers read."""
    tiers = cfg["features"]["value_tiers"]
    high, mid = tiers.get("high"), tiers.get("mid")
    if not (_is_number(high) and _is_number(mid) and 3 <= mid <= high <= 15):
        raise ConfigError(
            f"{source}: features.value_tiers should give the RFM total scores (3-15) from "
            f"which a customer is high and mid value, with 3 <= mid <= high <= 15 (e.g. "
            f"{{high: 12, mid: 8}}); got {tiers!r}."
        )
    priority = cfg["features"]["high_priority"]
    if not isinstance(priority, list) or not all(isinstance(p, str) for p in priority):
        raise ConfigError(
            f"{source}: features.high_priority should list ticket priorities (e.g. [high, "
            f"urgent]); got {priority!r}."
        )
    if not isinstance(cfg["clv"]["enabled"], bool):
        raise ConfigError(
            f"{source}: clv.enabled should be true or false; got {cfg['clv']['enabled']!r}."
        )
    if cfg["drivers"]["kind"] not in DRIVER_KINDS:
        raise ConfigError(
            f"{source}: drivers.kind should be one of {', '.join(DRIVER_KINDS)}; got "
            f"{cfg['drivers']['kind']!r}."
        )


def _check_actions(actions, source: str) -> None:
    """Check ``actions``: null, or a list of ``{rule, when: {field: [op, value]}, action}``."""
    if actions is None:
        return
    shape = (
        "a list of {rule: <text>, when: {<persona field>: [<operator>, <value>]}, action: "
        f"<text>}} with operators {' '.join(ACTION_OPERATORS)}, or null for the default rules"
    )
    if not isinstance(actions, list):
        raise ConfigError(f"{source}: actions should be {shape}; got {actions!r}.")
    for i, rule in enumerate(actions):
        ok = (
            isinstance(rule, dict)
            and set(rule) == {"rule", "when", "action"}
            and isinstance(rule["rule"], str)
            and isinstance(rule["action"], str)
            and isinstance(rule["when"], dict)
            and all(
                isinstance(test, list) and len(test) == 2 and test[0] in ACTION_OPERATORS
                for test in rule["when"].values()
            )
        )
        if not ok:
            raise ConfigError(f"{source}: actions[{i}] should be {shape}; got {rule!r}.")


def _check_b2b(cfg: dict, source: str) -> None:
    """Check ``level`` and the ``b2b`` section."""
    if cfg["level"] not in ("customer", "account"):
        raise ConfigError(f"{source}: level should be customer or account, got {cfg['level']!r}.")
    if cfg["business"] not in ("auto", "b2b", "b2c"):
        raise ConfigError(
            f"{source}: business should be one of auto, b2b, b2c; got {cfg['business']!r}."
        )
    lapsed = cfg["naming"]["lapsed"]
    if lapsed is not None and (
        not isinstance(lapsed, dict)
        or set(lapsed) != {"below", "word"}
        or not isinstance(lapsed["below"], int | float)
        or not isinstance(lapsed["word"], str)
    ):
        raise ConfigError(
            f"{source}: naming.lapsed should be {{below: 0.3, word: Lapsed}} or null; "
            f"got {lapsed!r}."
        )
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
    for key in ("sample_size", "bucket_size", "single_file_rows", "max_histories"):
        value = spark[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(
                f"{source}: spark.{key} should be a whole number >= 1, got {value!r}."
            )
    table = spark["assignments_table"]
    if table is not None and (not isinstance(table, str) or not table.strip()):
        raise ConfigError(
            f"{source}: spark.assignments_table should be a metastore table name "
            f"(sales.personas_assignments) or null, got {table!r}."
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

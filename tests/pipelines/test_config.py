"""Tests for ``pipelines.config.load_config``: defaults, overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import DEFAULT_CONFIG, ConfigError, load_config

DEFAULTS = yaml.safe_load(DEFAULT_CONFIG.read_text())


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "user.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_defaults_load():
    cfg = load_config()
    assert cfg == DEFAULTS
    assert cfg["seed"] == 42
    assert (cfg["model"]["k_min"], cfg["model"]["k_max"]) == (3, 15)
    assert cfg["as_of"] is None


def test_user_file_overrides_a_nested_key_only(write):
    cfg = load_config(write("model:\n  k_max: 6\n"))
    assert cfg["model"]["k_max"] == 6
    # every other setting, in the same section and elsewhere, keeps its default
    assert {k: v for k, v in cfg["model"].items() if k != "k_max"} == {
        k: v for k, v in DEFAULTS["model"].items() if k != "k_max"
    }
    assert {k: v for k, v in cfg.items() if k != "model"} == {
        k: v for k, v in DEFAULTS.items() if k != "model"
    }


def test_empty_user_file_gives_defaults(write):
    assert load_config(write("")) == DEFAULTS


def test_free_columns_section_accepts_any_table(write):
    cfg = load_config(write("columns:\n  transactions: {amount: revenue_usd}\n"))
    assert cfg["columns"] == {"transactions": {"amount": "revenue_usd"}}


@pytest.mark.parametrize(
    ("text", "setting", "hint"),
    [
        ("model:\n  k_maxx: 5\n", "'model.k_maxx'", "Did you mean 'k_max'?"),
        ("sed: 1\n", "'sed'", "Did you mean 'seed'?"),
        ("validation:\n  on_eror: fail\n", "'validation.on_eror'", "Did you mean 'on_error'?"),
    ],
)
def test_unknown_key_raises_with_hint(write, text, setting, hint):
    path = write(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: unknown setting {setting}.")
    assert hint in message


def test_unknown_key_without_close_match_lists_known(write):
    with pytest.raises(ConfigError, match="Known settings here: top_traits") as err:
        load_config(write("profile:\n  zzzzzz: 1\n"))
    assert "Did you mean" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  k_min: three\n", "model.k_min should be a whole number >= 0, got 'three'"),
        ("model:\n  k_max: 4.5\n", "model.k_max should be a whole number >= 0, got 4.5"),
        ("seed: true\n", "seed should be a whole number >= 0, got True"),
        ("seed: -1\n", "seed should be a whole number >= 0, got -1"),
        ("features:\n  window_days: '90'\n", "features.window_days should be a whole number"),
        (
            "model:\n  k_min: 6\n  k_max: 4\n",
            "need 2 <= model.k_min <= model.k_max, got k_min=6, k_max=4",
        ),
        ("model:\n  k_min: 1\n", "need 2 <= model.k_min <= model.k_max, got k_min=1"),
        ("model:\n  families: [usage, useage]\n", "model.families should list some of usage,"),
        ("model:\n  families: []\n", "model.families should list some of"),
        (
            "validation:\n  on_error: skip\n",
            "validation.on_error should be 'fail' or 'quarantine', got 'skip'",
        ),
        ("model: 3\n", "'model' should be a mapping, got 3"),
        ("columns:\n  transactions: amount\n", "columns should map table"),
        ("model:\n  families: [usage, feedback]\n", "lists feedback, which never shapes"),
        ("model:\n  attributes: yes\n", "model.attributes should be one of auto, always"),
        ("model:\n  criterion: gap\n", "model.criterion should be one of valley, silhouette"),
        ("model:\n  metric: cosine\n", "model.metric should be one of pooled, euclidean"),
        ("model:\n  max_valley: 2\n", "model.max_valley should be a number from 0 to 1"),
        ("model:\n  min_share: 0\n", "model.min_share should be a number between 0 and 1"),
        ("model:\n  min_distance: far\n", "model.min_distance should be a number >= 0"),
    ],
    ids=[
        "k_min_text",
        "k_max_float",
        "seed_bool",
        "seed_negative",
        "window_days_text",
        "k_min_above_k_max",
        "k_min_below_2",
        "unknown_family",
        "no_family",
        "on_error",
        "section_not_mapping",
        "columns_not_mapping",
        "feedback_shapes",
        "attributes_rule",
        "criterion",
        "metric",
        "max_valley",
        "min_share",
        "min_distance",
    ],
)
def test_invalid_values_raise_naming_the_file(write, text, expected):
    path = write(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


@pytest.mark.parametrize("on_error", ["fail", "quarantine"])
def test_valid_on_error(write, on_error):
    cfg = load_config(write(f"validation:\n  on_error: {on_error}\n"))
    assert cfg["validation"]["on_error"] == on_error


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_invalid_yaml(write):
    path = write("model: [k_min: 3\n")
    with pytest.raises(ConfigError, match="is not valid YAML") as err:
        load_config(path)
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str")], ids=["list", "str"]
)
def test_non_mapping_yaml(write, text, kind):
    path = write(text)
    with pytest.raises(ConfigError, match=f"should hold a mapping of settings, got {kind}") as err:
        load_config(path)
    assert str(err.value).startswith(str(path))


def test_keyword_overrides_win(write):
    path = write("as_of: 2025-01-01\nseed: 7\n")
    assert load_config(path)["as_of"] == "2025-01-01"  # a YAML date becomes text
    cfg = load_config(path, as_of="2026-06-30")
    assert (cfg["as_of"], cfg["seed"]) == ("2026-06-30", 7)
    # None means "not given": the file's value stays
    assert load_config(path, as_of=None)["as_of"] == "2025-01-01"
    assert load_config(as_of="2026-06-30", seed=1)["seed"] == 1


def test_keyword_override_of_unknown_key():
    with pytest.raises(ConfigError, match="the command line: unknown setting 'sead'"):
        load_config(sead=1)


def test_keyword_override_is_validated():
    with pytest.raises(ConfigError, match="need 2 <= model.k_min <= model.k_max"):
        load_config(model={"k_min": 20})


@pytest.mark.parametrize(
    "text",
    ["profile:\n  ci_level: 95\n", "model:\n  clip: three\n", "model:\n  tie_tolerance: x\n"],
    ids=["ci_level", "clip", "tie_tolerance"],
)
def test_float_settings_are_validated(write, text):
    with pytest.raises(ConfigError):
        load_config(write(text))


def test_b2b_influence_in_a_user_file_replaces_the_default_mapping(write):
    cfg = load_config(
        write(
            "level: account\nb2b:\n  influence: {exec: [chief], buyer: [purchasing]}\n"
            "  decision_makers: [exec, buyer]\n  account_nps: decision_makers\n"
        )
    )
    assert cfg["level"] == "account"
    assert cfg["b2b"]["influence"] == {"exec": ["chief"], "buyer": ["purchasing"]}
    assert cfg["b2b"]["end_users"] == ["end_user"]  # other_roles: the roles matching no word


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("level: accounts\n", "level should be customer or account"),
        ("b2b:\n  account_nps: median\n", "b2b.account_nps should be one of mean, decision_makers"),
        ("b2b:\n  decision_makers: [ceo]\n", "b2b.decision_makers should list some of the levels"),
        ("b2b:\n  end_users: [decision_maker]\n", "share levels"),
        ("b2b:\n  influence: {exec: chief}\n", "b2b.influence should map each level"),
        ("b2b:\n  min_gap: -1\n", "b2b.min_gap should be a number >= 0"),
        ("model:\n  families: [usage, account]\n", "model.families should list some of"),
    ],
    ids=["level", "account_nps", "unknown_level", "overlap", "influence", "min_gap", "family"],
)
def test_b2b_settings_are_validated(write, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(text))


def test_accounts_family_is_allowed(write):
    cfg = load_config(write("model:\n  families: [usage, accounts]\n"))
    assert cfg["model"]["families"] == ["usage", "accounts"]


# --------------------------------------------------------------------------- deep mistakes
# Each of these used to pass load_config and stop the run much later with a ValueError
# ("unexpected ValueError ... Run again with --debug"), after the data was read.

FORCE_FORMS = "kmeans_k<k> with k from model.k_min to model.k_max (kmeans_k3 to kmeans_k15)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  force: kmeans_k16\n", f"model.force should name a candidate: {FORCE_FORMS}"),
        ("model:\n  force: kmeans_k2\n", "got 'kmeans_k2'"),
        ("model:\n  force: hdbscan_umap_0.05\n", "needs the share in model.density_shares"),
        (
            "model:\n  density_shares: [0.02, 0.05]\n  force: hdbscan_umap_0.1\n",
            "hdbscan_<space>_<share> with model.density_space and a share of "
            "model.density_shares (hdbscan_umap_0.02, hdbscan_umap_0.05); got 'hdbscan_umap_0.1'",
        ),
        (
            "model:\n  density_shares: [0.05]\n  density_space: pca\n  force: hdbscan_umap_0.05\n",
            "(hdbscan_pca_0.05)",
        ),
        ("model:\n  density_shares: [0.05, 1.5]\n", "model.density_shares should list"),
        ("model:\n  density_shares: 0.05\n", "model.density_shares should list"),
        ("model:\n  n_init: 0\n", "model.n_init should be a whole number >= 1, got 0"),
        ("model:\n  stability_resamples: 0\n", "model.stability_resamples should be a whole"),
        ("model:\n  umap: {n_neighbors: 1}\n", "model.umap.n_neighbors should be a whole number"),
        ("model:\n  family_weights: {usage_mx: 2}\n", "model.family_weights should map families"),
        ("model:\n  family_weights: {usage: -1}\n", "model.family_weights should map families"),
        (
            "features:\n  value_tiers: {high: 20, mid: 8}\n",
            "features.value_tiers should give the RFM total scores (3-15) from which a customer "
            "is high and mid value, with 3 <= mid <= high <= 15 (e.g. {high: 12, mid: 8}); got "
            "{'high': 20, 'mid': 8}",
        ),
        ("features:\n  value_tiers: {high: 8, mid: 12}\n", "features.value_tiers should give"),
        ("features:\n  high_priority: urgent\n", "features.high_priority should list"),
        ("clv:\n  n_periods: 0\n", "clv.n_periods should be a whole number >= 1, got 0"),
        ("clv:\n  horizon_weeks: 0\n", "clv.horizon_weeks should be a number > 0, got 0"),
        ("clv:\n  discount_rate: -1\n", "clv.discount_rate should be a number > -1"),
        ("clv:\n  enabled: 'no'\n", "clv.enabled should be true or false; got 'no'"),
        ("clv:\n  model: pareto\n", "clv.model should be one of auto, bgnbd, subscription"),
        ("model:\n  lens: wallet\n", "model.lens should be one of both, needs, value"),
        ("model:\n  noise: drop\n", "model.noise should be one of nearest, unassigned"),
        ("model:\n  density_space: tsne\n", "model.density_space should be one of umap, pca"),
        ("drivers:\n  kind: nps\n", "drivers.kind should be one of score, promoter; got 'nps'"),
        ("drivers:\n  n_splits: 1\n", "drivers.n_splits should be a whole number >= 2, got 1"),
        ("report:\n  map_sample: -1\n", "report.map_sample should be a whole number >= 1"),
        ("profile:\n  alpha: 1\n", "profile.alpha should be a number between 0 and 1, excluded"),
        (
            "actions:\n  - {rule: vip, when: {value_index: ['=>', 1.5]}, action: Call.}\n",
            "actions[0] should be a list of {rule: <text>, when: {<persona field>: [<operator>, "
            "<value>]}, action: <text>} with operators == != >= <= > <",
        ),
        ("actions: call them\n", "actions should be a list of"),
        ("resegment:\n  gates: {min_stability: 2}\n", "resegment.gates.min_stability should be"),
    ],
)
def test_mistakes_found_deep_in_a_run_are_config_errors(write, text, expected):
    path = write(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


@pytest.mark.parametrize(
    "text",
    [
        "model:\n  force: kmeans_k3\n",
        "model:\n  force: kmeans_k10\n",
        "model:\n  density_shares: [0.02, 0.05]\n  force: hdbscan_umap_0.05\n",
        "model:\n  density_shares: [0.1]\n  density_space: scaled\n  force: hdbscan_scaled_0.1\n",
        "model:\n  family_weights: {usage: 2, usage_mix: 1}\n",
        "actions:\n  - {rule: vip, when: {value_index: ['>=', 1.5]}, action: Call them.}\n",
    ],
)
def test_valid_forms_load(write, text):
    load_config(write(text))


def test_action_operators_and_driver_kinds_are_the_models():
    from models.actions import _OPS
    from models.drivers import _KINDS
    from pipelines.config import ACTION_OPERATORS, DRIVER_KINDS

    assert set(ACTION_OPERATORS) == set(_OPS)
    assert set(DRIVER_KINDS) == set(_KINDS)


def test_a_forced_candidate_out_of_range_is_a_config_error_at_the_cli(write, tmp_path):
    import subprocess
    import sys

    path = write("model:\n  force: kmeans_k12\n  k_max: 10\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "train", "--data", tmp_path, "--config", path],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "model.force should name a candidate" in result.stderr
    assert "'kmeans_k12'" in result.stderr and "unexpected" not in result.stderr

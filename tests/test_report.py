"""The analyst's report on the demo data: names, NPS ranks, focus, drivers, themes, formats.

`build_demo_report` runs `personas train` on a small demo (planted personas, seeded) into a
temporary MLflow store, then profiles its outputs with every part of the report: NPS
tests, key drivers, themes, focus and actions. The browser test reuses it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm, spearmanr

from models.actions import FALLBACK_ACTION, focus_rule_text, pick_focus, suggest_actions
from models.drivers import key_drivers
from models.nps import nps_interval, nps_summary, nps_vs_rest
from models.profiler import profile_personas
from models.themes import persona_themes
from pipelines.config import load_config
from pipelines.demo import PERSONAS, write_demo
from pipelines.report import write_markdown, write_report

CUSTOMERS, SEED = 1500, 2

#: Words that make a planted persona recognisable in a name (any one of them).
RECOGNISABLE = {
    "power_users": ["power", "all-round", "daily", "automation", "collaboration"],
    "struggling_enterprise": ["integrations", "escalat", "support-heavy", "admin", "api"],
    "bargain_hunters": ["discount", "late payer", "low-value", "small-ticket"],
    "fading_accounts": ["fading"],
    "new_explorers": ["newcomer", "growing", "webinar"],
    "analytics_specialists": ["data export", "reports", "api"],
}


def _read_features(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"personas"])["features"]
    meta = pd.DataFrame(meta).set_index("name")
    return table.to_pandas().set_index("customer_id"), meta


def _embedding(frame: pd.DataFrame, meta: pd.DataFrame, n: int, seed: int) -> tuple:
    numeric = [f for f in meta.index if meta.loc[f, "transform"] != "category"]
    numeric = [f for f in numeric if meta.loc[f, "family"] not in ("feedback", "attributes")]
    x = frame[numeric].astype(float)
    x = np.sign(x) * np.log1p(x.abs())
    x = ((x - x.mean()) / x.std().replace(0, 1)).fillna(0).to_numpy()
    rows = np.sort(np.random.default_rng(seed).choice(len(x), min(n, len(x)), replace=False))
    _, _, vt = np.linalg.svd(x[rows] - x[rows].mean(axis=0), full_matrices=False)
    return x[rows] @ vt[:2].T, rows


@functools.cache
def build_demo_report(customers: int = CUSTOMERS, seed: int = SEED) -> dict:
    """Demo data -> ``personas train`` -> the full report; cached for the test session."""
    base = Path(tempfile.mkdtemp(prefix="personas-report-"))
    data, out, report = base / "data", base / "train", base / "report"
    write_demo(data, n_customers=customers, seed=seed)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "pipelines", "train", "--data", data, "--output", out]
    done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cfg = load_config(None)
    frame, meta = _read_features(out / "features.parquet")
    assignments = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    labels = assignments.set_index("customer_id").loc[frame.index, "persona_id"].to_numpy()
    feedback = pd.read_csv(data / "feedback.csv", dtype={"customer_id": str})
    tickets = pd.read_csv(data / "support_tickets.csv", dtype={"customer_id": str})
    drivers = key_drivers(frame, labels, meta, random_state=cfg["seed"])
    themes = persona_themes(
        pd.Series(labels, index=frame.index),
        comments=feedback[["customer_id", "comment"]].dropna(),
        topics=tickets[["customer_id", "topic"]],
    )
    personas = profile_personas(
        frame,
        labels,
        meta,
        trait_features=[f for f in meta.index if meta.loc[f, "family"] != "feedback"],
        value_column=cfg["naming"]["value_feature"],
        top_traits=cfg["profile"]["top_traits"],
        min_trait_effect=cfg["profile"]["min_trait_effect"],
        naming=cfg["naming"],
        drivers=drivers,
        themes=themes,
    )
    embedding, rows = _embedding(frame, meta, 5000, cfg["seed"])
    report.mkdir()
    model = {"n_customers": len(frame), "as_of": "2026-09-30", "families": ["usage", "revenue"]}
    write_report(
        report / "report.html",
        personas=personas,
        quality=json.loads((out / "data_quality.json").read_text()),
        model={**model, "silhouette": None},
        embedding=embedding,
        labels=labels[rows],
        run_id="test",
        drivers=drivers,
    )
    write_markdown(report / "report.md", personas=personas, model=model, run_id="test")
    planted = pd.read_csv(data / "planted_personas.csv", dtype={"customer_id": str})
    truth = planted.set_index("customer_id").loc[frame.index, "persona"].to_numpy()
    majority = pd.crosstab(labels, truth).idxmax(axis=1).to_dict()
    (report / "personas.json").write_text(json.dumps(personas, indent=2))
    return {
        "html": report / "report.html",
        "markdown": report / "report.md",
        "personas": personas,
        "drivers": drivers,
        "planted": majority,
        "train_html": out / "report.html",
    }


@pytest.fixture(scope="module")
def demo() -> dict:
    return build_demo_report()


def _by_planted(demo: dict) -> dict[str, dict]:
    return {demo["planted"][p["persona_id"]]: p for p in demo["personas"] if p["persona_id"] >= 0}


# --------------------------------------------------------------------------- demo: done means


@pytest.mark.slow
def test_each_planted_persona_is_one_persona(demo):
    assert sorted(demo["planted"].values()) == sorted(PERSONAS), demo["planted"]


@pytest.mark.slow
def test_names_recognise_the_planted_personas(demo):
    for planted, p in _by_planted(demo).items():
        name = p["name"].lower()
        assert any(word in name for word in RECOGNISABLE[planted]), (planted, p["name"])
    names = [p["name"] for p in demo["personas"]]
    assert len(set(names)) == len(names)


@pytest.mark.slow
def test_nps_ranks_follow_the_planted_scores(demo):
    by = _by_planted(demo)
    ranked = [k for k, p in by.items() if p["nps_rank"] is not None]
    assert len(ranked) == len(PERSONAS)  # every demo persona has 30+ respondents
    planted = [PERSONAS[k]["nps"] for k in ranked]
    assert spearmanr(planted, [-by[k]["nps_rank"] for k in ranked]).statistic == 1.0


@pytest.mark.slow
def test_focus_and_at_risk_match_the_planted_truth(demo):
    by = _by_planted(demo)
    focus = {k for k, p in by.items() if p["is_focus"]}
    at_risk = {k for k, p in by.items() if p["is_at_risk"]}
    assert "power_users" in focus and 1 <= len(focus) <= 3
    assert focus <= {"power_users", "analytics_specialists"}
    assert at_risk == {"struggling_enterprise"}
    assert by["struggling_enterprise"]["risk_reason"].startswith("value per customer")


@pytest.mark.slow
def test_nps_tests_separate_the_extremes(demo):
    by = _by_planted(demo)
    for k in ("power_users", "struggling_enterprise"):
        assert by[k]["nps_significant"] and by[k]["nps_p_value"] < 0.001
    assert by["power_users"]["nps_vs_rest"] > 0 > by["struggling_enterprise"]["nps_vs_rest"]


@pytest.mark.slow
def test_actions_follow_the_rules(demo):
    by = _by_planted(demo)
    rules = {k: {a["rule"] for a in p["actions"]} for k, p in by.items()}
    assert {"at risk", "high value"} <= rules["struggling_enterprise"]
    assert "promoters" in rules["power_users"]
    assert "fading usage" in rules["fading_accounts"]


@pytest.mark.slow
def test_themes_are_in_the_customers_words(demo):
    by = _by_planted(demo)
    terms = {k: " ".join(t["term"] for t in p["themes"]["keywords"]) for k, p in by.items()}
    assert re.search(r"support|integrations|slow|limits", terms["struggling_enterprise"])
    assert re.search(r"export|report", terms["analytics_specialists"])
    assert re.search(r"using|anymore|cost", terms["fading_accounts"])
    topics = {t["topic"] for t in by["new_explorers"]["themes"]["topics"]}
    assert "how_to" in topics
    for p in by.values():
        for quote in p["themes"]["examples"]:
            assert "@" not in quote and not re.search(r"\d{3} \d{4}", quote)


@pytest.mark.slow
def test_drivers_overall_and_honest_within_personas(demo):
    overall = demo["drivers"]["overall"]
    assert overall[0]["clear"] and overall[0]["ci_low"] > 0
    # demo scores depend on the persona only: inside a persona nothing should be clear
    clear_inside = [d for p in demo["personas"] for d in p["drivers"] if d["clear"]]
    assert len(clear_inside) <= 1
    assert all(len(p["drivers"]) == 3 for p in demo["personas"] if p["persona_id"] >= 0)


@pytest.mark.slow
def test_descriptions_give_evidence_in_units(demo):
    for p in demo["personas"]:
        assert p["description"].startswith("Compared with all customers, ")
        assert re.search(r"\(\w+ [-+\d.,]+%? ?\w* vs [-+\d.,]+", p["description"]), p["description"]
        assert p["description"].count(". ") == 1  # two sentences


@pytest.mark.slow
def test_html_report_is_self_contained_and_small(demo):
    page = demo["html"].read_text()
    assert page.count("class='card'") == len(demo["personas"])
    assert page.count("<img ") == 6
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert demo["html"].stat().st_size < 10_000_000
    assert "The rule: Focus (ideal customer profile)" in page


@pytest.mark.slow
def test_markdown_summary(demo):
    text = demo["markdown"].read_text()
    assert text.startswith("# Customer personas: 1,500 customers")
    assert "**Focus:** **" in text and "**At risk:** **" in text
    assert len(text) < 6000
    for p in demo["personas"]:
        assert p["name"] in text


# --------------------------------------------------------------------------- NPS statistics

#: Realistic persona answer shares (promoters, passives, detractors), from loved to hated.
SHARES = [
    (0.70, 0.25, 0.05),
    (0.55, 0.30, 0.15),
    (0.40, 0.35, 0.25),
    (0.30, 0.40, 0.30),
    (0.20, 0.35, 0.45),
    (0.10, 0.30, 0.60),
    (0.05, 0.15, 0.80),
]


def _coverage(n: int, shares: tuple, reps: int, rng) -> float:
    counts = rng.multinomial(n, shares, size=reps)
    low, high = nps_interval(counts[:, 0], counts[:, 2], n)
    true = 100 * (shares[0] - shares[2])
    return float(((low <= true) & (true <= high)).mean())


@pytest.mark.parametrize("n", [30, 60, 150, 500])
def test_nps_interval_covers_the_true_nps_93_to_97_percent(n):
    # 4000 samples per scenario: the Monte Carlo sd of a coverage is about 0.35 points
    rng = np.random.default_rng(n)
    covered = [_coverage(n, s, 4000, rng) for s in SHARES]
    assert all(0.93 <= c <= 0.97 for c in covered), dict(zip(SHARES, covered, strict=True))
    assert 0.94 <= np.mean(covered) <= 0.96


def test_nps_summary_uses_the_interval_and_contains_the_observed_nps():
    scores = [10] * 20 + [8] * 8 + [3] * 2  # P=20, D=2, n=30: NPS 60
    out = nps_summary(scores)
    low, high = nps_interval(20, 2, 30)
    assert (out["nps"], out["nps_ci_low"], out["nps_ci_high"]) == (
        60.0,
        round(low, 2),
        round(high, 2),
    )
    # adjusted Wald by hand: pa = 20.75/33, da = 2.75/33
    pa, da = 20.75 / 33, 2.75 / 33
    se = 100 * np.sqrt((pa + da - (pa - da) ** 2) / 33)
    assert out["nps_ci_low"] == pytest.approx(100 * (pa - da) - 1.959964 * se, abs=0.01)
    for one in ([10], [0], [8]):  # a single respondent: the observed NPS stays inside
        s = nps_summary(one)
        assert s["nps_ci_low"] <= s["nps"] <= s["nps_ci_high"]


def test_nps_vs_rest_two_sample_test_by_hand():
    # persona 0: 30 respondents, 20 promoters, 2 detractors -> NPS 60
    # rest (persona 1): 40 respondents, 10 promoters, 20 detractors -> NPS -25
    scores = np.array(
        [10.0] * 20 + [8] * 8 + [3] * 2 + [9] * 10 + [7] * 10 + [0] * 20 + [np.nan] * 5
    )
    labels = np.array([0] * 30 + [1] * 40 + [1] * 5)
    out = nps_vs_rest(scores, labels, min_respondents=30)
    # pooled shares under the null: p = 30/70, d = 22/70
    p, d = 30 / 70, 22 / 70
    z = 85 / (100 * np.sqrt((p + d - (p - d) ** 2) * (1 / 30 + 1 / 40)))
    p_raw = 2 * norm.sf(z)
    assert out[0]["nps_vs_rest"] == 85.0 and out[1]["nps_vs_rest"] == -85.0
    assert out[0]["nps_p_value"] == pytest.approx(min(1, 2 * p_raw), rel=1e-3)  # Holm, m=2
    assert out[0]["nps_significant"] and (out[0]["nps_rank"], out[1]["nps_rank"]) == (1, 2)


def test_too_few_respondents_are_not_tested_nor_ranked():
    scores = np.array([10.0] * 40 + [3.0] * 40 + [10.0] * 5)
    labels = np.array([0] * 40 + [1] * 40 + [2] * 5)
    out = nps_vs_rest(scores, labels, min_respondents=30)
    assert out[2] == {
        "nps_reliable": False,
        "nps_vs_rest": None,
        "nps_p_value": None,
        "nps_significant": None,
        "nps_rank": None,
    }
    assert (out[0]["nps_rank"], out[1]["nps_rank"]) == (1, 2)


def test_holm_keeps_the_family_wise_error_rate_under_the_null():
    # six personas answering alike: a false "significant" in at most ~5% of surveys
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(6), 80)
    false = 0
    for _ in range(400):
        scores = rng.choice([10, 8, 3], size=labels.size, p=[0.4, 0.35, 0.25]).astype(float)
        out = nps_vs_rest(scores, labels)
        false += any(v["nps_significant"] for v in out.values())
    assert false / 400 <= 0.07


def _frame(n0=60, n1=60, n2=10):
    n = n0 + n1 + n2
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "usage_events": np.r_[rng.poisson(50, n0), rng.poisson(5, n1), rng.poisson(20, n2)],
            "revenue_monetary": np.r_[np.full(n0, 1000.0), np.full(n1, 50.0), np.full(n2, 300.0)],
            "nps_latest": np.r_[np.full(n0, 10.0), np.full(n1, 2.0), np.full(n2, 10.0)],
        },
        index=[f"C{i}" for i in range(n)],
    )
    meta = pd.DataFrame(
        {
            "family": ["usage", "revenue", "feedback"],
            "lens": ["needs", "value", "needs"],
            "description": ["product usage", "net revenue", "latest NPS"],
            "unit": ["events", "money", "score"],
            "transform": ["log", "log", "none"],
            "label": ["usage", "revenue", "NPS"],
        },
        index=["usage_events", "revenue_monetary", "nps_latest"],
    )
    return frame, np.r_[np.zeros(n0), np.ones(n1), np.full(n2, 2)].astype(int), meta


def test_profile_adds_tests_focus_actions_and_keeps_overrides_apart():
    frame, labels, meta = _frame()
    overrides = {"Persona 1": {"name": "Unhappy light users", "description": "Mine."}, 2: "Tiny"}
    out = {p["persona_id"]: p for p in profile_personas(frame, labels, meta, overrides=overrides)}
    assert out[0]["nps_rank"] == 1 and out[0]["is_focus"] and not out[0]["is_at_risk"]
    assert out[1]["name"] == "Persona 1" and out[1]["custom_name"] == "Unhappy light users"
    assert out[1]["custom_description"] == "Mine." and out[2]["custom_name"] == "Tiny"
    assert out[0]["custom_name"] is None
    # persona 2: 10 respondents, all promoters, value above average: never picked on NPS
    assert out[2]["nps_reliable"] is False and out[2]["nps_rank"] is None
    assert not out[2]["is_focus"]
    assert {a["rule"] for a in out[0]["actions"]} >= {"high value", "promoters"}
    assert {a["rule"] for a in out[1]["actions"]} >= {"detractors", "low value"}
    assert out[0]["value_index"] == pytest.approx((60_000 / 66_000) / (60 / 130), abs=1e-3)


def test_at_risk_by_low_p_alive_without_nps():
    frame, labels, meta = _frame()
    frame = frame.drop(columns="nps_latest").assign(p_alive=np.where(labels == 0, 0.3, 0.9))
    out = {p["persona_id"]: p for p in profile_personas(frame, labels, meta.drop("nps_latest"))}
    assert out[0]["is_at_risk"] and "P(alive) 0.30" in out[0]["risk_reason"]
    assert not any(p["is_focus"] for p in out.values())
    assert out[0]["actions"][0]["rule"] == "at risk"


def test_action_rules_are_data():
    persona = {"value_index": 2.0, "nps": None, "trait_effects": {"usage_trend": -0.9}}
    rules = [
        {"rule": "vip", "when": {"value_index": [">=", 1.5]}, "action": "Call."},
        {"rule": "needs nps", "when": {"nps": ["<", 0]}, "action": "Never: NPS unknown."},
        {"rule": "fading", "when": {"trait:usage_trend": ["<=", -0.5]}, "action": "Win back."},
    ]
    assert [a["rule"] for a in suggest_actions(persona, rules)] == ["vip", "fading"]
    assert suggest_actions({}, rules) == [{"rule": "none", "action": FALLBACK_ACTION}]
    with pytest.raises(ValueError, match="Unknown operator '=>'"):
        suggest_actions(persona, [{"rule": "x", "when": {"nps": ["=>", 1]}, "action": "-"}])


def test_focus_picks_at_most_max_focus_highest_value_first():
    personas = [
        {"value_index": v, "nps": 50.0, "nps_vs_rest": 20.0, "nps_significant": True}
        for v in (1.3, 3.0, 2.0, 0.9)
    ]
    pick_focus(personas, max_focus=2)
    assert [p["is_focus"] for p in personas] == [False, True, True, False]
    assert "above" in personas[1]["focus_reason"] and personas[0]["focus_reason"] is None
    text = focus_rule_text(max_focus=2, min_value_index=1.5, max_p_alive=0.4)
    assert "up to 2 personas" in text and "1.5×" in text and "below 0.4" in text


# --------------------------------------------------------------------------- formats


def _legacy_personas():
    # what the walking skeleton's profiler wrote: no tests, drivers, themes or focus
    return [
        {
            "persona_id": pid,
            "name": f"Persona {pid}",
            "description": "<b>not html</b>",
            "size": 500_000,
            "share": 0.5,
            "nps": nps,
            "nps_ci_low": nps - 5,
            "nps_ci_high": nps + 5,
            "respondents": 100,
            "promoters": 40,
            "passives": 40,
            "detractors": 20,
            "revenue_share": 0.5,
            "traits": [],
        }
        for pid, nps in ((0, 20.0), (1, -10.0))
    ]


def test_report_for_a_million_customers_stays_small(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1_000_000)
    path = write_report(
        tmp_path / "report.html",
        personas=_legacy_personas(),
        quality={"tables": {}},
        model={"n_customers": 1_000_000, "as_of": "2026-09-30", "silhouette": 0.3},
        embedding=rng.normal(size=(1_000_000, 2)),
        labels=labels,
        run_id="r",
    )
    page = path.read_text()
    assert path.stat().st_size < 10_000_000
    assert "5,000 customers" in page  # the map is sampled
    assert "&lt;b&gt;not html&lt;/b&gt;" in page


def test_greyed_nps_and_escaped_quotes(tmp_path):
    personas = _legacy_personas()
    personas[1].update(nps_reliable=False, respondents=12)
    personas[0]["themes"] = {"keywords": [], "topics": [], "examples": ["<script>x</script>"]}
    page = write_report(
        tmp_path / "r.html",
        personas=personas,
        quality={"tables": {}},
        model={"n_customers": 10, "as_of": "2026-09-30"},
        embedding=np.zeros((2, 2)),
        labels=np.array([0, 1]),
        run_id="r",
    ).read_text()
    assert "too few respondents" in page and "<script>" not in page
    md = write_markdown(
        tmp_path / "r.md", personas=personas, model={"n_customers": 10, "as_of": "x"}, run_id="r"
    ).read_text()
    assert "(too few respondents: 12)" in md

"""The analyst's report as `personas train` wrote it, then NPS statistics and formats.

`build_demo_report` runs `personas train` once on a small demo (planted personas, seeded)
into a temporary folder and MLflow store; every test of the first part reads the files that
run wrote (personas.json, report.html parsed with the standard library, report.md,
data_quality.json, assignments.csv). The browser test reuses the same run.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, spearmanr

from models.actions import FALLBACK_ACTION, focus_rule_text, pick_focus, suggest_actions
from models.nps import nps_interval, nps_summary, nps_vs_rest
from models.profiler import profile_personas
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


@functools.cache
def build_demo_report(customers: int = CUSTOMERS, seed: int = SEED) -> dict:
    """Demo data -> ``personas train`` into a temporary folder and store; once per session.

    Returns the paths the run wrote (``out``, ``html``, ``markdown``), ``data``, the
    parsed ``personas.json`` (``personas``) and the run id the command printed.
    """
    base = Path(tempfile.mkdtemp(prefix="personas-report-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    data, out = base / "data", base / "train"
    write_demo(data, n_customers=customers, seed=seed)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{base / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "pipelines", "train", "--data", data, "--output", out]
    done = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        "data": data,
        "out": out,
        "html": out / "report.html",
        "markdown": out / "report.md",
        "personas": json.loads((out / "personas.json").read_text()),
        "run_id": re.search(r"MLflow run: (\w+)", done.stdout).group(1),
    }


@pytest.fixture(scope="module")
def demo() -> dict:
    return build_demo_report()


# --------------------------------------------------------------------------- reading the page

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Node:
    """One element of the page: its tag, attributes, children and text pieces in order."""

    tag: str
    attrs: dict
    children: list = field(default_factory=list)  # Node or str

    @property
    def text(self) -> str:
        """The element's text, whitespace collapsed, with a space where a <br> is."""
        parts = [
            c if isinstance(c, str) else (" " if c.tag == "br" else c.text) for c in self.children
        ]
        return re.sub(r"\s+", " ", "".join(parts)).strip()

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        """Every descendant with this tag (and class), in document order."""
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if c.tag == tag and (cls is None or cls in c.classes):
                    found.append(c)
                found += c.find_all(tag, cls)
        return found

    def child(self, tag: str) -> Node:
        return next(c for c in self.children if isinstance(c, Node) and c.tag == tag)


class _Tree(HTMLParser):
    """Build a `Node` tree of an HTML page with the standard library's parser."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("document", {})
        self.open = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.open[-1].children.append(node)
        if tag not in _VOID:
            self.open.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.open) - 1, 0, -1):
            if self.open[i].tag == tag:
                del self.open[i:]
                return

    def handle_data(self, data):
        self.open[-1].children.append(data)


def parse(path: Path) -> Node:
    tree = _Tree()
    tree.feed(path.read_text(encoding="utf-8"))
    tree.close()
    return tree.root


@pytest.fixture(scope="module")
def page(demo) -> Node:
    return parse(demo["html"])


def _cards(page: Node) -> dict[int, Node]:
    return {int(c.attrs["data-persona"]): c for c in page.find_all("section", "card")}


def _facts(card: Node) -> dict[str, str]:
    """The card's facts: label -> value, as the page shows them."""
    facts = {}
    for box in card.find_all("div", "facts")[0].children:
        if isinstance(box, Node):
            label = box.child("b").text
            facts[label] = box.text[len(label) :].strip()
    return facts


def _section(page: Node, title: str) -> list[Node]:
    """The elements after the <h2> titled ``title``, up to the next <h2>."""
    body = page.find_all("body")[0].children
    nodes = [c for c in body if isinstance(c, Node)]
    start = next(i for i, n in enumerate(nodes) if n.tag == "h2" and n.text == title)
    end = next((i for i, n in enumerate(nodes) if n.tag == "h2" and i > start), len(nodes))
    return nodes[start + 1 : end]


def _rows(table: Node) -> list[list[str]]:
    return [[cell.text for cell in row.find_all("td")] for row in table.find_all("tr")[1:]]


# what the page writes for a persona, from personas.json (independently of pipelines.report)


def _name(p: dict) -> str:
    return p.get("custom_name") or p["name"]


def _pct(share) -> str:
    return "—" if share is None else f"{100 * share:.0f}%"


def _nps(p: dict) -> str:
    text = f"{p['nps']:+.0f} [{p['nps_ci_low']:+.0f}, {p['nps_ci_high']:+.0f}]"
    return text if p.get("nps_reliable", True) else f"{text} too few respondents"


def _planted(demo: dict) -> dict[int, str]:
    """Persona id -> the planted persona most of its customers come from."""
    planted = pd.read_csv(demo["data"] / "planted_personas.csv", dtype={"customer_id": str})
    found = pd.read_csv(demo["out"] / "assignments.csv", dtype={"customer_id": str})
    both = found.merge(planted, on="customer_id", validate="one_to_one")
    assert len(both) == len(planted) == len(found)
    return pd.crosstab(both["persona_id"], both["persona"]).idxmax(axis=1).to_dict()


def _by_planted(demo: dict) -> dict[str, dict]:
    majority = _planted(demo)
    return {majority[p["persona_id"]]: p for p in demo["personas"] if p["persona_id"] >= 0}


# --------------------------------------------------------------------------- report.html


@pytest.mark.slow
def test_each_persona_has_a_card_saying_what_personas_json_says(demo, page):
    cards = _cards(page)
    assert sorted(cards) == sorted(p["persona_id"] for p in demo["personas"])
    for p in demo["personas"]:
        card = cards[p["persona_id"]]
        title = card.child("h3").text
        assert title.startswith(_name(p)), (title, p["name"])
        badges = {b.text for b in card.find_all("span", "badge")}
        expected = {"Focus": p["is_focus"], "At risk": p["is_at_risk"], "Unstable": p["unstable"]}
        assert badges == {b for b, on in expected.items() if on}, (title, badges)
        description = p.get("custom_description") or p["description"]
        assert card.child("p").text == re.sub(r"\s+", " ", description).strip()
        facts = _facts(card)
        assert facts["customers"] == f"{p['size']:,} ({_pct(p['share'])})"
        assert facts["revenue share"] == _pct(p["revenue_share"])
        assert facts["NPS [95%]"] == _nps(p)
        assert facts["NPS rank"] == (str(p["nps_rank"]) if p["nps_rank"] else "—")
        assert facts["stability (Jaccard)"] == f"{p['stability']:.2f}"
        if p["nps_vs_rest"] is not None:
            assert facts["vs the rest"].startswith(f"{p['nps_vs_rest']:+.0f} (p=")
        shown = card.find_all("li")
        for trait in p["traits"]:
            assert any(f"({trait['std_diff']:+.1f} sd)" in li.text for li in shown), trait
        for action in p["actions"]:
            assert f"{action['rule']}: {action['action']}" in [li.text for li in shown]


@pytest.mark.slow
def test_overview_lists_every_persona_as_personas_json_does(demo, page):
    [table] = [n for n in _section(page, "Overview") if n.tag == "table"]
    expected = [
        [
            _name(p),
            f"{p['size']:,}",
            _pct(p["share"]),
            _pct(p["revenue_share"]),
            _nps(p),
            str(p["nps_rank"] or "—"),
        ]
        for p in demo["personas"]
    ]
    rows = [[r[0], r[1], r[2], r[3], r[4], r[6]] for r in _rows(table)]
    assert rows == expected


@pytest.mark.slow
def test_header_names_the_customers_the_date_and_the_run(demo, page):
    quality = json.loads((demo["out"] / "data_quality.json").read_text())
    assignments = pd.read_csv(demo["out"] / "assignments.csv")
    meta = page.find_all("p", "meta")[0].text
    assert meta.startswith(f"{len(assignments):,} customers as of {quality['as_of'][:10]} · ")
    assert f"· {len(demo['personas'])} personas ·" in meta
    assert meta.endswith(f"MLflow run {demo['run_id']}")


@pytest.mark.slow
def test_where_to_act_names_the_focus_and_at_risk_personas(demo, page):
    blocks = {d.child("h3").text: d for d in page.find_all("div", "where")[0].find_all("div")}
    for title, flag, reason in [
        ("Focus", "is_focus", "focus_reason"),
        ("At risk", "is_at_risk", "risk_reason"),
    ]:
        items = [li.text for li in blocks[title].find_all("li")]
        picked = [f"{_name(p)}: {p[reason]}" for p in demo["personas"] if p[flag]]
        assert items == (picked or ["none meets the rule"]), title


@pytest.mark.slow
def test_data_quality_table_is_data_quality_json(demo, page):
    quality = json.loads((demo["out"] / "data_quality.json").read_text())
    [table] = [n for n in _section(page, "Data quality") if n.tag == "table"]
    expected = [
        [
            name,
            f"{t['rows']:,}",
            f"{t['rows_used']:,}",
            f"{t['rows_invalid']:,}",
            f"{t.get('unknown_customer_rows', 0):,}",
            f"{t.get('rows_after_as_of', 0):,}",
        ]
        for name, t in quality["tables"].items()
    ]
    assert [r[:6] for r in _rows(table)] == expected


@pytest.mark.slow
def test_segmentation_json_and_the_report_show_the_choice(demo, page):
    summary = json.loads((demo["out"] / "segmentation.json").read_text())
    personas = json.loads((demo["out"] / "personas.json").read_text())
    assert summary["n_personas"] == len(personas)
    assert summary["structure"] == "distinct"  # the demo's planted personas
    assert summary["chosen"] in {c["name"] for c in summary["candidates"]}
    assert summary["reason"] and summary["reason"].endswith(".")
    text = page.text
    assert "How many personas" in text
    assert f"{summary['n_personas']} personas ({summary['chosen']})" in text
    assert "slices of a continuum" not in text  # distinct groups: no continuum warning
    assert "slices of a continuum" not in (demo["out"] / "report.md").read_text()


def test_html_report_is_self_contained_and_small(demo, page):
    text = demo["html"].read_text()
    captions = [f.text for f in page.find_all("figcaption")]
    assert len(page.find_all("img")) == len(captions) == 7
    assert any(c.startswith("Key drivers.") for c in captions)
    assert all(
        img.attrs["src"].startswith("data:image/png;base64,") for img in page.find_all("img")
    )
    assert not page.find_all("script") and not page.find_all("link")
    assert not [a for a in page.find_all("a") if not a.attrs.get("href", "").startswith("#")]
    assert "@import" not in text and "url(" not in text
    assert demo["html"].stat().st_size < 10_000_000
    assert "The rule: Focus (ideal customer profile)" in page.text


# --------------------------------------------------------------------------- report.md


@pytest.mark.slow
def test_markdown_summary_carries_the_persona_table(demo):
    text = demo["markdown"].read_text()
    quality = json.loads((demo["out"] / "data_quality.json").read_text())
    assert text.startswith(f"# Customer personas: {CUSTOMERS:,} customers as of ")
    assert quality["as_of"][:10] in text.splitlines()[0]
    assert f"MLflow run `{demo['run_id']}`" in text
    assert len(text) < 6000
    for p in demo["personas"]:
        nps = f"{p['nps']:+.0f} [{p['nps_ci_low']:+.0f}, {p['nps_ci_high']:+.0f}]"
        row = f"| {_name(p)} | {p['size']:,} ({_pct(p['share'])}) | {_pct(p['revenue_share'])} "
        assert f"{row}| {nps}" in text, _name(p)
    focus = [f"**{_name(p)}** ({p['focus_reason']})" for p in demo["personas"] if p["is_focus"]]
    assert "**Focus:** " + "; ".join(focus) in text


# --------------------------------------------------------------------------- demo: done means


@pytest.mark.slow
def test_each_planted_persona_is_one_persona(demo):
    assert sorted(_planted(demo).values()) == sorted(PERSONAS), _planted(demo)


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
def test_drivers_are_honest_within_personas(demo):
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


def _continuum(folder: Path, n: int = 800, seed: int = 2) -> Path:
    """One behaviour profile with customer-level spread: no groups to find."""
    rng = np.random.default_rng(seed)
    ids = [f"K{i:04d}" for i in range(n)]
    intensity = rng.lognormal(0.0, 0.5, n)
    usage, pays, answers = [], [], []
    for cid, level in zip(ids, intensity, strict=True):
        for _ in range(1 + rng.poisson(20 * level)):
            day = pd.Timestamp("2026-01-01") + pd.Timedelta(days=float(rng.uniform(0, 180)))
            usage.append((cid, day.strftime("%Y-%m-%d %H:%M"), rng.choice(["a", "b", "c"])))
        for _ in range(1 + rng.poisson(4 * level)):
            day = pd.Timestamp("2025-07-01") + pd.Timedelta(days=int(rng.integers(0, 360)))
            pays.append((cid, day.strftime("%Y-%m-%d"), round(float(rng.gamma(3, 10)), 2)))
        answers.append((cid, "2026-06-01", int(rng.integers(0, 11))))
    folder.mkdir(parents=True)
    pd.DataFrame({"customer_id": ids}).to_csv(folder / "customers.csv", index=False)
    for name, rows, columns in (
        ("usage_events", usage, ["customer_id", "timestamp", "feature"]),
        ("transactions", pays, ["customer_id", "timestamp", "amount"]),
        ("feedback", answers, ["customer_id", "timestamp", "nps"]),
    ):
        pd.DataFrame(rows, columns=columns).to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_a_base_without_groups_is_called_a_continuum(tmp_path):
    data = _continuum(tmp_path / "flat")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "train", "--data", data, "--output", out],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "segmentation.json").read_text())
    assert summary["structure"] in {"none", "weak"}
    assert "slices of a continuum" in (out / "report.md").read_text()
    assert "slices of a continuum" in (out / "report.html").read_text()
    assert "slices of a continuum" in done.stdout
    names = [p["name"] for p in json.loads((out / "personas.json").read_text())]
    assert not any(re.fullmatch(r"Customers( \d+)?", n) for n in names), names

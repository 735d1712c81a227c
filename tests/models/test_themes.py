"""Tests for ``models.themes``: scrubbing, comment keywords and ticket topics per persona."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.themes import persona_themes, scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me: ana.silva+x@mail.example.co.uk", "mail me: [email]"),
        ("Call me on +1 202 555 0143.", "Call me on [phone]."),
        ("call (030) 1234-5678 today", "call [phone] today"),
        ("see https://example.com/a?b=1 now", "see [link] now"),
        ("order 12345, since 2026-01-02, 3 tickets", "order 12345, since 2026-01-02, 3 tickets"),
        (None, None),
    ],
)
def test_scrub(text, expected):
    assert scrub(text) == expected


def _labels():
    ids = [f"C{i}" for i in range(60)]
    return pd.Series([0] * 20 + [1] * 20 + [2] * 10 + [-1] * 10, index=ids)


def _comments():
    rows = []
    for i in range(20):
        rows.append((f"C{i}", "The invoice was wrong again, billing is a mess"))
        rows.append((f"C{20 + i}", "Dashboards are slow to load"))
    rows += [("C0", "Invoice wrong, write to joe@example.com"), ("C1", "Great product overall")]
    rows += [(f"C{50 + i}", "Dashboards are slow") for i in range(10)]  # unassigned
    rows += [("ghost", "Invoice invoice invoice")]  # not a known customer
    return pd.DataFrame(rows, columns=["customer_id", "comment"])


def _tickets():
    topics = ["billing"] * 30 + ["bug"] * 5 + ["bug"] * 30 + ["billing"] * 5 + ["how_to"] * 12
    ids = [f"C{i % 20}" for i in range(35)] + [f"C{20 + i % 20}" for i in range(35)]
    ids += [f"C{40 + i % 10}" for i in range(12)]
    return pd.DataFrame({"customer_id": ids, "topic": topics})


@pytest.fixture(scope="module")
def themes():
    return persona_themes(_labels(), comments=_comments(), topics=_tickets())


def test_keywords_over_represented_in_each_persona(themes):
    assert set(themes) == {0, 1, 2}  # -1 is left out
    words0 = {k["term"] for k in themes[0]["keywords"]}
    words1 = {k["term"] for k in themes[1]["keywords"]}
    assert words0 & {"invoice", "billing", "invoice wrong", "wrong"}
    assert words1 & {"dashboards", "slow", "slow load", "dashboards slow"}
    assert not words0 & words1
    invoice = next(k for k in themes[0]["keywords"] if "invoice" in k["term"])
    assert invoice["share"] == pytest.approx(21 / 22, abs=0.01) and invoice["rest_share"] == 0


def test_examples_are_scrubbed_and_distinct(themes):
    quotes = themes[0]["examples"]
    assert quotes and all("@" not in q for q in quotes)
    assert len({q.lower() for q in quotes}) == len(quotes)
    assert not any("[email]" in q for q in quotes[:1])  # clean quotes come first


def test_topics_over_represented(themes):
    assert [t["topic"] for t in themes[0]["topics"]] == ["billing"]
    assert themes[0]["topics"][0]["share"] == pytest.approx(30 / 35, abs=1e-3)
    assert [t["topic"] for t in themes[1]["topics"]] == ["bug"]
    assert [t["topic"] for t in themes[2]["topics"]] == ["how_to"]
    assert (themes[2]["comments"], themes[2]["tickets"]) == (0, 12)
    assert themes[2]["keywords"] == []


def test_plain_column_names_and_missing_inputs():
    comments = _comments().rename(columns={"comment": "text"})
    out = persona_themes(_labels(), comments=comments)
    assert out[0]["topics"] == [] and out[0]["keywords"]
    assert persona_themes(_labels()) == {}
    with pytest.raises(KeyError, match="customer_id and 'text'"):
        persona_themes(_labels(), comments=_comments().assign(extra=1))


def test_sampled_and_seeded():
    rng = np.random.default_rng(0)
    labels = pd.Series(rng.integers(0, 3, 3000), index=[f"C{i}" for i in range(3000)])
    words = np.array(["price", "support", "export", "slow", "easy"])
    text = [" ".join(rng.choice(words, 4)) for _ in range(3000)]
    comments = pd.DataFrame({"customer_id": labels.index, "text": text})
    first = persona_themes(labels, comments=comments, max_comments=1000, random_state=1)
    assert first == persona_themes(labels, comments=comments, max_comments=1000, random_state=1)
    assert sum(v["comments"] for v in first.values()) == 3000  # counts are of all comments

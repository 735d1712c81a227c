"""Needs in the customers' own words: comment keywords and ticket topics per persona.

Survey comments are scrubbed of personal data, weighted by TF-IDF, and a term is a theme
of a persona when its mean weight there is higher than among everyone else; we report
the share of the persona's comments that use it against the share of the others'.
Ticket topics are compared the same way, as shares of tickets. Example comments are the
persona's comments that use its top terms most, scrubbed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.feature_extraction.text import TfidfVectorizer

__all__ = ["persona_themes", "scrub"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w(+])[+(]?\d[\d\s().-]{6,}\d(?![\w])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?")
_PLACEHOLDER = re.compile(r"\[(?:email|phone|link)\]")


def scrub(text: str | None) -> str | None:
    """Replace e-mail addresses, phone numbers and links with ``[email]``, ``[phone]``, ``[link]``.

    A small local helper; ``features.privacy.scrub`` is meant to replace it.

    Parameters
    ----------
    text : str or None
        Free text.

    Returns
    -------
    str or None
        The text without them (None stays None).

    Examples
    --------
    >>> scrub("Call +1 202 555 0143 or mail ana.silva@example.com")
    'Call [phone] or mail [email]'
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    text = _EMAIL.sub("[email]", str(text))
    text = _URL.sub("[link]", text)
    return _PHONE.sub(_phone, text)


def _phone(match: re.Match) -> str:
    """``[phone]`` for 8+ digits that are not a date."""
    found = match.group(0)
    if _DATE.fullmatch(found.strip()) or sum(c.isdigit() for c in found) < 8:
        return found
    return "[phone]"


def _as_frame(data: pd.DataFrame | None, column: str) -> pd.DataFrame:
    """Two columns, ``customer_id`` and ``column`` (the only other column if named otherwise)."""
    if data is None or len(data) == 0:
        return pd.DataFrame({"customer_id": [], column: []})
    if column not in data:
        others = [c for c in data.columns if c != "customer_id"]
        if len(others) != 1:
            raise KeyError(f"Expected columns customer_id and {column!r}, got {list(data.columns)}")
        data = data.rename(columns={others[0]: column})
    out = data[["customer_id", column]].dropna()
    return out.assign(customer_id=out["customer_id"].astype(str))


def _persona_of(frames: list[pd.DataFrame], persona: pd.Series) -> list[np.ndarray]:
    """Return the persona of each row's ``customer_id`` (NaN when not in ``persona``).

    As ``frame["customer_id"].map(persona)`` for each frame, with the ids matched by one
    Arrow hash join for all of them: pandas would turn millions of ids into Python strings
    first, and each join hashes every customer's id.
    """
    chunks = []
    for frame in frames:  # an Arrow-backed column gives its chunks, no copy
        got = pa.array(frame["customer_id"].astype(str), type=pa.string())
        chunks += got.chunks if isinstance(got, pa.ChunkedArray) else [got]
    ids = pa.chunked_array(chunks, pa.string())
    known = pa.array(persona.index.astype(str), type=pa.string())
    at = pc.index_in(ids, value_set=known).to_numpy(zero_copy_only=False)
    found = ~np.isnan(at)
    out = np.full(len(ids), np.nan)
    out[found] = persona.to_numpy(dtype=float)[at[found].astype(np.int64)]
    return np.split(out, np.cumsum([len(f) for f in frames])[:-1])


def _keywords(docs, top_terms, min_count, min_lift, max_docs, seed, n):
    """Over-represented terms and example comments per persona (``docs``: persona, text).

    The texts are scrubbed (`scrub`) once sampled.
    """
    if len(docs) > max_docs:
        docs = docs.sample(max_docs, random_state=seed)
    docs = docs.assign(text=docs["text"].map(scrub))
    clean = docs["text"].map(lambda t: _PLACEHOLDER.sub(" ", t))
    vectorizer = TfidfVectorizer(
        stop_words="english",
        ngram_range=(1, 2),
        min_df=min(min_count, max(1, len(docs) // 50)),
        max_features=20_000,
        sublinear_tf=True,
        token_pattern=r"(?u)\b[^\W\d_][^\W\d_]{2,}\b",
    )
    try:
        weights = vectorizer.fit_transform(clean)
    except ValueError:  # nothing but stop words
        return {}
    terms = vectorizer.get_feature_names_out()
    used = (weights > 0).tocsc()
    persona = docs["persona"].to_numpy()
    out = {}
    for pid in np.unique(persona):
        mine = persona == pid
        if mine.sum() < min_count or (~mine).sum() == 0:
            continue
        gap = np.asarray(weights[mine].mean(axis=0) - weights[~mine].mean(axis=0)).ravel()
        count = np.asarray(used[mine].sum(axis=0)).ravel()
        share_in = count / mine.sum()
        share_out = np.asarray(used[~mine].sum(axis=0)).ravel() / (~mine).sum()
        chosen: list[int] = []
        for j in np.argsort(-gap):
            if gap[j] <= 0 or len(chosen) == top_terms:
                break
            if count[j] < min_count or share_in[j] < min_lift * share_out[j]:
                continue
            words = set(terms[j].split())
            if any(words & set(terms[k].split()) for k in chosen):
                continue  # "integrations" after "integrations keep breaking" says nothing new
            chosen.append(j)
        keywords = [
            {
                "term": str(terms[j]),
                "share": round(float(share_in[j]), 4),
                "rest_share": round(float(share_out[j]), 4),
                "comments": int(count[j]),
            }
            for j in sorted(chosen, key=lambda j: share_out[j] - share_in[j])
        ]
        out[int(pid)] = (keywords, _examples(docs[mine], weights[mine], chosen, n))
    return out


def _examples(docs: pd.DataFrame, weights, chosen: list[int], n: int = 3, width: int = 200):
    if not chosen:
        return []
    score = np.asarray(weights[:, chosen].sum(axis=1)).ravel()
    seen, out, texts = set(), [], docs["text"].to_numpy()
    for i in np.argsort(-score, kind="stable"):
        if score[i] <= 0 or len(out) == n:
            break
        text = texts[i]
        key = re.sub(r"[^.]*\[(?:email|phone|link)\][^.]*", "", text).lower().strip(" .!")
        if key in seen:
            continue
        seen.add(key)
        out.append(text if len(text) <= width else text[: width - 1].rstrip() + "…")
    return out


def _topics(tickets: pd.DataFrame, top_topics: int, min_count: int, min_lift: float):
    out = {}
    counts = pd.crosstab(tickets["persona"], tickets["topic"].astype(str))
    total = counts.sum(axis=0)
    for pid, row in counts.iterrows():
        n_in, n_out = row.sum(), total.sum() - row.sum()
        if n_in < min_count or n_out == 0:
            continue
        share_in, share_out = row / n_in, (total - row) / n_out
        gap = (share_in - share_out).sort_values(ascending=False, kind="stable")
        out[int(pid)] = [
            {
                "topic": str(topic),
                "share": round(float(share_in[topic]), 4),
                "rest_share": round(float(share_out[topic]), 4),
                "tickets": int(row[topic]),
            }
            for topic in gap.index[:top_topics]
            if share_in[topic] >= min_lift * share_out[topic] and row[topic] >= min_count
        ]
    return out


def persona_themes(
    labels: pd.Series,
    *,
    comments: pd.DataFrame | None = None,
    topics: pd.DataFrame | None = None,
    top_terms: int = 5,
    top_topics: int = 3,
    examples: int = 3,
    min_count: int = 3,
    min_lift: float = 1.25,
    max_comments: int = 20_000,
    random_state: int = 0,
) -> dict[int, dict]:
    """Themes per persona from survey comments and support-ticket topics.

    Parameters
    ----------
    labels : pandas.Series
        Persona id per customer, indexed by ``customer_id``.
    comments : pandas.DataFrame, optional
        ``customer_id`` and ``text`` (or one other column holding it), one row per comment.
    topics : pandas.DataFrame, optional
        ``customer_id`` and ``topic`` (or one other column), one row per ticket.
    top_terms : int, default=5
        Keywords kept per persona.
    top_topics : int, default=3
        Over-represented ticket topics kept per persona.
    examples : int, default=3
        Example comments kept per persona, scrubbed of e-mails, phones and links.
    min_count : int, default=3
        A keyword or topic needs at least this many comments or tickets in the persona.
    min_lift : float, default=1.25
        A keyword or topic is a theme when its share in the persona is at least this many
        times its share among everyone else.
    max_comments : int, default=20000
        Comments used at most (a seeded sample) for the keywords and examples; the
        comment and ticket counts and the ticket topics use every one.
    random_state : int, default=0
        Seed of that sample.

    Returns
    -------
    dict of int to dict
        Per persona id with any data: ``keywords`` (``term``, ``share`` of the persona's
        comments using it, ``rest_share`` among everyone else's, ``comments``),
        ``examples`` (scrubbed quotes), ``topics`` (``topic``, ``share`` of its tickets,
        ``rest_share``, ``tickets``), and the counts ``comments`` and ``tickets``.
        Customers not in ``labels`` and persona -1 are left out.
    """
    persona = pd.Series(labels.to_numpy(), index=labels.index.astype(str), name="persona")
    docs, tickets = _as_frame(comments, "text"), _as_frame(topics, "topic")
    of_docs, of_tickets = _persona_of([docs, tickets], persona)
    # scrubbing never empties a text nor fills an empty one: only the sampled ones are scrubbed
    docs = docs.assign(text=docs["text"].astype(str), persona=of_docs)
    docs = docs[docs["persona"].notna() & (docs["text"].str.strip() != "")]
    docs = docs.astype({"persona": int}).reset_index(drop=True)
    tickets = tickets.assign(persona=of_tickets).dropna()
    tickets = tickets.astype({"persona": int})
    words = (
        _keywords(docs, top_terms, min_count, min_lift, max_comments, random_state, examples)
        if len(docs)
        else {}
    )
    kinds = _topics(tickets, top_topics, min_count, min_lift) if len(tickets) else {}
    out = {}
    for pid in sorted(set(persona.tolist()) - {-1}):
        keywords, quotes = words.get(pid, ([], []))
        n_comments = int((docs["persona"] == pid).sum())
        n_tickets = int((tickets["persona"] == pid).sum())
        if not (n_comments or n_tickets):
            continue
        out[int(pid)] = {
            "keywords": keywords,
            "examples": quotes,
            "topics": kinds.get(pid, []),
            "comments": n_comments,
            "tickets": n_tickets,
        }
    return out

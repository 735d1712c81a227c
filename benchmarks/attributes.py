"""When attributes shape the personas: subscription bases with no usage or engagement log.

A telecom-like subscription base (not the demo, not the tests' data): each customer holds
products (internet service, phone lines, TV, security, backup), a contract and a payment
method, and is billed monthly for what they hold. Personas are planted in what customers
hold (their needs when no usage log exists); churn in the next quarter is held out: it
depends on the persona (month-to-month fibre customers leave most) and is never in the
tables. Customers come with ``planted_personas.csv`` and ``churn.csv``.

Each base is trained twice with the real recipe (``personas train``): with the default
``model.attributes: auto`` (no usage or engagement log, so the attributes shape the
personas) and with ``model.attributes: never`` (the personas come from revenue alone, as
before). Reported: the number of personas, their ARI with the planted ones, and how well
each customer's persona churn rate ranks the held-out churn (ROC AUC), beside a
naive one-hot k-means on the attributes with the planted number of personas.

Run: ``.venv/bin/python benchmarks/attributes.py`` (writes ``benchmarks/attributes.md``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
END = pd.Timestamp("2025-12-31")

#: persona -> (share, P(internet: none/dsl/fibre), P(phone lines 0/1/2), P(tv), P(security),
#: P(backup), P(contract month/year/two-year), P(payment card/transfer/check), churn rate)
PERSONAS = {
    "phone_only": (0.22, (0.9, 0.1, 0.0), (0.0, 0.7, 0.3), 0.02, 0.02, 0.02,
                   (0.3, 0.3, 0.4), (0.2, 0.5, 0.3), 0.03),
    "streaming_families": (0.25, (0.0, 0.1, 0.9), (0.1, 0.3, 0.6), 0.9, 0.2, 0.3,
                           (0.4, 0.4, 0.2), (0.6, 0.3, 0.1), 0.12),
    "secure_professionals": (0.18, (0.0, 0.6, 0.4), (0.2, 0.7, 0.1), 0.1, 0.9, 0.9,
                             (0.1, 0.4, 0.5), (0.3, 0.6, 0.1), 0.05),
    "fibre_month_to_month": (0.2, (0.0, 0.0, 1.0), (0.6, 0.4, 0.0), 0.3, 0.05, 0.05,
                             (0.95, 0.05, 0.0), (0.1, 0.1, 0.8), 0.45),
    "basic_dsl": (0.15, (0.0, 1.0, 0.0), (0.5, 0.5, 0.0), 0.05, 0.1, 0.1,
                  (0.6, 0.3, 0.1), (0.3, 0.3, 0.4), 0.2),
}  # fmt: skip
#: The held-out base without groups: every customer draws what they hold from one profile.
NO_GROUPS = {
    "everyone": (1.0, (0.3, 0.3, 0.4), (0.3, 0.4, 0.3), 0.4, 0.3, 0.3, (0.5, 0.3, 0.2),
                 (0.4, 0.3, 0.3), 0.1),
}  # fmt: skip
PRICE = {"dsl": 35.0, "fibre": 70.0, "line": 20.0, "tv": 25.0, "security": 10.0, "backup": 8.0}


def make_base(n: int, seed: int, personas: dict = PERSONAS) -> dict[str, pd.DataFrame]:
    """Return the tables of one subscription base (see the module docstring)."""
    rng = np.random.default_rng(seed)
    names = list(personas)
    shares = np.array([personas[p][0] for p in names])
    persona = rng.choice(len(names), size=n, p=shares / shares.sum())
    rows, bills = [], []
    ids = [f"S{seed}{i:06d}" for i in range(n)]
    for i, cid in enumerate(ids):
        _, internet, lines, tv, sec, backup, contract, payment, churn = personas[names[persona[i]]]
        net = ("none", "dsl", "fibre")[rng.choice(3, p=internet)]
        n_lines = int(rng.choice(3, p=lines))
        has = {"tv": rng.random() < tv, "security": rng.random() < sec,
               "backup": rng.random() < backup}  # fmt: skip
        if net == "none":
            n_lines = max(n_lines, 1)
        months = int(rng.integers(3, 49))
        rows.append({
            "customer_id": cid,
            "signup_date": (END - pd.DateOffset(months=months)).date(),
            "internet_service": net,
            "phone_lines": n_lines,
            "tv_package": "yes" if has["tv"] else "no",
            "online_security": "yes" if has["security"] else "no",
            "cloud_backup": "yes" if has["backup"] else "no",
            "contract": ("month-to-month", "one year", "two year")[rng.choice(3, p=contract)],
            "payment_method": ("card", "bank transfer", "check")[rng.choice(3, p=payment)],
            "churn": bool(rng.random() < churn),
        })  # fmt: skip
        price = PRICE.get(net, 0.0) + PRICE["line"] * n_lines
        price += sum(PRICE[k] for k, v in has.items() if v)
        price *= rng.uniform(0.9, 1.1)
        for m in range(min(months, 12)):
            day = END - pd.DateOffset(months=m) + pd.Timedelta(days=int(rng.integers(0, 3)))
            bills.append((cid, day, round(price * rng.uniform(0.97, 1.03), 2)))
    customers = pd.DataFrame(rows)
    return {
        "customers": customers.drop(columns="churn"),
        "transactions": pd.DataFrame(bills, columns=["customer_id", "timestamp", "amount"]),
        "planted_personas": pd.DataFrame({"customer_id": ids, "persona": np.array(names)[persona]}),
        "churn": customers[["customer_id", "churn"]],
    }


def _train(data: Path, out: Path, model: dict, store: Path) -> float:
    config = out.with_suffix(".yaml")
    config.write_text(json.dumps({"tracking": {"uri": f"sqlite:///{store}", "model_name": None},
                                  "model": model}))  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "train", "--data", str(data), "--config",
         str(config), "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"train failed on {data}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _scores(labels: pd.Series, base: dict) -> dict:
    """ARI with the planted personas and AUC of each customer's persona churn rate."""
    truth = base["planted_personas"].set_index("customer_id")["persona"]
    churn = base["churn"].set_index("customer_id")["churn"].astype(int)
    labels = labels.reindex(truth.index)
    rate = churn.groupby(labels).transform("mean")
    return {
        "k": int(labels.nunique()),
        "ari": adjusted_rand_score(truth, labels),
        "auc": roc_auc_score(churn, rate),
    }


def _naive(base: dict, k: int, seed: int) -> pd.Series:
    """One-hot k-means on the attributes with the planted k: the analyst's first try."""
    attrs = base["customers"].drop(columns=["customer_id", "signup_date"])
    text = [c for c in attrs if not pd.api.types.is_numeric_dtype(attrs[c])]
    X = pd.get_dummies(attrs, columns=text).astype(float)
    X = (X - X.mean()) / X.std().replace(0, 1)
    km = KMeans(k, n_init=10, random_state=seed).fit(X)
    return pd.Series(km.labels_, index=base["customers"]["customer_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", default=None, help="default: benchmarks/attributes.md")
    parser.add_argument(
        "--no-groups",
        action="store_true",
        help="the base without groups (NO_GROUPS); default out: benchmarks/attributes_none.md",
    )
    args = parser.parse_args()
    personas = NO_GROUPS if args.no_groups else PERSONAS
    name = "attributes_none.md" if args.no_groups else "attributes.md"
    args.out = args.out or str(ROOT / "benchmarks" / name)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in [int(s) for s in args.seeds.split(",")]:
            base, data = make_base(args.customers, seed, personas), work / f"base{seed}"
            data.mkdir()
            for name in ("customers", "transactions"):
                base[name].to_parquet(data / f"{name}.parquet", index=False)
            row = {"seed": seed}
            for rule in ("auto", "never"):
                out = work / f"out{seed}_{rule}"
                row[f"{rule}_s"] = _train(data, out, {"attributes": rule}, work / "mlflow.db")
                found = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
                row[rule] = _scores(found.set_index("customer_id")["persona_id"], base)
                row[rule]["structure"] = json.loads((out / "segmentation.json").read_text())[
                    "structure"
                ]
            row["naive"] = _scores(_naive(base, len(personas), seed), base)
            rows.append(row)
            sys.stderr.write(json.dumps(row, default=float) + "\n")
    lines = [
        f"`python benchmarks/attributes.py --customers {args.customers} --seeds {args.seeds}`"
        f"{' --no-groups' if args.no_groups else ''}"
        f" ({len(personas)} planted personas in what customers hold; monthly bills; churn held "
        "out). ARI: with the planted personas; AUC: each customer's persona churn rate "
        "against the held-out churn.",
        "",
        "| seed | attributes: auto (k, ARI, AUC, structure) | attributes: never (k, ARI, AUC) | "
        "one-hot k-means, planted k (ARI, AUC) |",
        "|---:|---|---|---|",
    ]
    for r in rows:
        a, n, v = r["auto"], r["never"], r["naive"]
        lines.append(
            f"| {r['seed']} | {a['k']}, {a['ari']:.3f}, {a['auc']:.3f}, {a['structure']} | "
            f"{n['k']}, {n['ari']:.3f}, {n['auc']:.3f} | {v['ari']:.3f}, {v['auc']:.3f} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

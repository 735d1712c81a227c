"""How often the decision makers vs end users gap test rejects when there is no gap.

Simulates accounts of 2-9 people, a quarter of them decision makers, half of them
answering, every score drawn around the same centre plus an account effect shared by the
account's people (the "account mood", standard deviation 0 or 1 score point), and counts
how often `models.influence.gap_test` finds a gap at the 5% level::

    python scripts/gap_size.py            # 2,000 runs per cell, about a minute
    python scripts/gap_size.py --runs 500
"""

from __future__ import annotations

import logging

import numpy as np
import typer

from models.influence import gap_test

logger = logging.getLogger("gap_size")


def rejection_rate(n_accounts: int, mood_sd: float, runs: int, rng: np.random.Generator) -> float:
    """Return the share of ``runs`` simulated bases without a gap where the test rejects."""
    rejected = 0
    for _ in range(runs):
        k = rng.integers(2, 10, n_accounts)
        acc = np.repeat(np.arange(n_accounts), k)
        mood = rng.normal(0, mood_sd, n_accounts)[acc]
        decides = rng.random(acc.size) < 0.25
        answers = rng.random(acc.size) < 0.5
        score = np.clip(np.round(rng.normal(7.5 + mood, 1.5)), 0, 10)
        a, b = decides & answers, ~decides & answers
        rejected += gap_test(score[a], acc[a], score[b], acc[b])["p_value"] < 0.05
    return rejected / runs


def main(
    runs: int = typer.Option(2000, "--runs", help="Simulated bases per cell."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Log the rejection rate at 30, 60 and 150 accounts, with and without account mood."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(seed)
    for n_accounts in (30, 60, 150):
        for mood_sd in (0.0, 1.0):
            rate = rejection_rate(n_accounts, mood_sd, runs, rng)
            logger.info("%4d accounts, mood sd %.0f: %.1f%%", n_accounts, mood_sd, 100 * rate)


if __name__ == "__main__":
    typer.run(main)

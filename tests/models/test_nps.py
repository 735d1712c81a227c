"""Tests for `models.nps` beyond those of the profiler and report (Holm's adjustment)."""

from __future__ import annotations

import numpy as np

from models.nps import holm


def test_holm_matches_the_step_down_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; then monotone
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_a_single_test():
    np.testing.assert_allclose(holm(np.array([0.6, 0.7])), [1.0, 1.0])
    np.testing.assert_allclose(holm(np.array([0.02])), [0.02])

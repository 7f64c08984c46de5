"""Forgetting (thesis Eq. 6.12), average incremental accuracy, harmonic mean."""

import numpy as np
import pytest

from irbook.metrics import (
    average_forgetting,
    average_incremental_accuracy,
    forgetting_curve,
    harmonic_mean,
    old_new_summary,
)

NAN = np.nan
ACC = [[80.0, NAN, NAN],
       [70.0, 90.0, NAN],
       [60.0, 85.0, 75.0]]


def test_forgetting_by_hand():
    # step 1: task 0 lost 80 -> 70; step 2: task 0 lost max(80, 70) - 60 = 20, task 1 90 - 85
    curve = forgetting_curve(ACC)
    assert np.isnan(curve[0])
    assert curve[1:].tolist() == [10.0, 12.5]
    assert average_forgetting(ACC) == 12.5
    assert average_forgetting(ACC, after=1) == 10.0


def test_forgetting_uses_the_best_earlier_accuracy_and_ignores_entries_above_the_diagonal():
    acc = np.array(ACC)
    acc[1, 0] = 85.0  # task 0 improved at step 1: its peak is now 85
    acc[0, 1] = acc[0, 2] = acc[1, 2] = 99.0  # zero-shot numbers are not used
    assert forgetting_curve(acc)[1] == -5.0
    assert average_forgetting(acc) == ((85 - 60) + (90 - 85)) / 2


def test_average_incremental_accuracy_by_hand():
    # A_0 = 80, A_1 = (70 + 90) / 2 = 80, A_2 = (60 + 85 + 75) / 3
    assert average_incremental_accuracy(ACC) == pytest.approx((80 + 80 + 220 / 3) / 3)
    weighted = (80 + (2 * 70 + 90) / 3 + (2 * 60 + 85 + 75) / 4) / 3
    assert average_incremental_accuracy(ACC, task_weights=[2, 1, 1]) == pytest.approx(weighted)


def test_harmonic_mean_and_old_new_summary():
    assert harmonic_mean(60.0, 40.0) == 48.0
    assert harmonic_mean(0.0, 0.0) == 0.0
    np.testing.assert_allclose(harmonic_mean(np.array([1.0, 2.0]), 2.0), [4 / 3, 2.0])
    summary = old_new_summary({"R@1": 79.24, "mAP": 55.78}, {"R@1": 46.93, "mAP": 19.54})
    # thesis Table 6.1, initial model: averages 63.09 and 37.66
    assert summary["R@1"]["average"] == pytest.approx(63.085)
    assert summary["mAP"]["average"] == pytest.approx(37.66)
    assert summary["R@1"]["harmonic"] == pytest.approx(2 * 79.24 * 46.93 / (79.24 + 46.93))


def test_bad_matrices_are_rejected():
    with pytest.raises(ValueError, match="square"):
        forgetting_curve([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"acc\[1, 0\] is NaN"):
        forgetting_curve([[1.0, NAN], [NAN, 2.0]])
    with pytest.raises(ValueError, match="after must be in 0..2"):
        average_forgetting(ACC, after=3)
    with pytest.raises(ValueError, match="same metrics"):
        old_new_summary({"R@1": 1.0}, {"mAP": 1.0})

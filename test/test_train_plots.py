"""Evaluation figures: what the sequence plot draws for steps without a target."""

from __future__ import annotations

import matplotlib.axes
import numpy as np

from rkn_ros.train.plots import plot_report

REPORT = {
    "log_likelihood": 1.0,
    "rmse": 0.1,
    "coverage_1sigma": 0.7,
    "coverage_2sigma": 0.95,
    "calibration_histogram": {
        "edges": [-1.0, 0.0, 1.0],
        "observed": [0.5, 0.5],
        "expected_normal": [0.34, 0.34],
    },
}


def test_steps_without_a_target_are_a_gap_in_the_truth_line(tmp_path, monkeypatch):
    """A recording with readings missing (targets stored as 0 there) must not show the truth
    dropping to 0: the dashed truth line has a gap exactly where ``valid`` is False."""
    drawn = []
    plot = matplotlib.axes.Axes.plot

    def recording_plot(self, *args, **kwargs):
        lines = plot(self, *args, **kwargs)
        drawn.extend((kwargs.get("label"), line.get_ydata()) for line in lines)
        return lines

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(2, 30, 1))
    target = mean + 0.1
    valid = np.ones((2, 30), dtype=bool)
    valid[0, 10:15] = valid[1, :3] = False
    target[~valid] = 0.0
    written = plot_report(tmp_path, REPORT, mean, np.full_like(mean, 0.01), target, ["angle"],
                          valid=valid)
    assert [p.name for p in written] == ["sequences.png", "calibration.png"]
    truths = [np.asarray(y, dtype=float) for label, y in drawn if label == "truth"]
    assert len(truths) == 2
    for s, truth in enumerate(truths):
        np.testing.assert_array_equal(np.isnan(truth), ~valid[s])
        np.testing.assert_array_equal(truth[valid[s]], target[s, valid[s], 0])

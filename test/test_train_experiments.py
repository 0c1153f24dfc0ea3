"""The experiment script's bookkeeping: same jobs for every model, mean +- std tables."""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _experiments():
    spec = importlib.util.spec_from_file_location("experiments",
                                                  REPO / "benchmarks" / "experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_model_gets_the_same_data_epochs_and_budget(tmp_path):
    exp = _experiments()
    args = argparse.Namespace(experiment="pendulum", scale="tiny", seeds=3, epochs=None,
                              device="cpu")
    jobs = exp.plan(args, tmp_path)
    models = {job["model"] for job in jobs}
    assert models == {"rkn", "lstm_50", "gru_50", "lstm_small", "gru_small"}
    assert len(jobs) == 5 * 3
    for job in jobs:
        recipe = job["recipe"]
        assert recipe["data"] == jobs[0]["recipe"]["data"]
        assert recipe["training"] == jobs[0]["recipe"]["training"]
        assert job["test"] == jobs[0]["test"]
    assert sorted(job["seed"] for job in jobs if job["model"] == "rkn") == [0, 1, 2]


def test_summary_is_mean_and_std_over_seeds():
    exp = _experiments()
    rows = [{"group": "pendulum", "model": "rkn", "seed": s, "parameters": 10,
             "log_likelihood": ll, "rmse": r} for s, ll, r in ((0, 5.0, 0.1), (1, 6.0, 0.3))]
    table, markdown = exp.summarize(rows, "pendulum")
    entry = table["pendulum"]["rkn"]
    assert entry["log_likelihood"]["mean"] == 5.5
    assert entry["rmse"]["std"] == statistics.stdev([0.1, 0.3])
    assert "| rkn | 10 | 5.5000 +- 0.7071 |" in markdown
    assert "6.182 +- 0.155" in markdown  # the paper's number beside ours

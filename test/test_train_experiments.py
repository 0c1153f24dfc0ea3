"""The experiment script's bookkeeping: same jobs for every model, mean +- std tables."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import types
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
                              device="cpu", jobs=1)
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


def test_quad_link_tasks_and_the_rkn_variant(tmp_path):
    exp = _experiments()
    args = argparse.Namespace(experiment="quad_link", scale="tiny", seeds=1, epochs=None,
                              device="cpu", jobs=1, tasks="noisy", rkn_variants=True)
    jobs = exp.plan(args, tmp_path)
    assert {job["group"] for job in jobs} == {"quad_link_noisy"}
    models = {job["model"]: job["recipe"]["model"] for job in jobs}
    assert set(models) == {"rkn", "rkn_logvar_mean", "lstm_50", "gru_50"}
    variant = models["rkn_logvar_mean"]
    assert variant["variance_from_mean"] and variant["log_variance_features"]
    assert "variance_from_mean" not in models["rkn"]  # the paper's decoder stays the default
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "quad_link_noisy_test", "quad_link_noisy_train", "quad_link_noisy_validation"]


def test_a_run_stopped_by_the_deadline_is_evaluated_then_continued(tmp_path, monkeypatch):
    exp = _experiments()
    args = argparse.Namespace(experiment="pendulum", scale="tiny", seeds=1, epochs=2,
                              device="cpu", jobs=1)
    job = next(j for j in exp.plan(args, tmp_path) if j["model"] == "gru_small")
    # The script's clock says the deadline is 1 ms away: training stops after its first batch.
    monkeypatch.setattr(exp, "time", types.SimpleNamespace(time=lambda: 1000.0 - 1e-3))
    stopped = exp.run_one({**job, "deadline": 1000.0, "evaluate_stopped": True})
    assert stopped["stopped"] == "time_budget" and stopped["epochs"] == 0
    assert "log_likelihood" in stopped  # evaluated at the checkpoint it has
    result = Path(job["out"]) / "result.json"
    assert not result.exists()  # so the next invocation continues it
    # Without --evaluate-stopped such a run is only marked unfinished.
    assert exp.run_one({**job, "deadline": 1000.0})["incomplete"]
    monkeypatch.undo()
    finished = exp.run_one(job)
    assert finished["stopped"] == "epochs" and finished["epochs"] == 2
    assert json.loads(result.read_text()) == finished
    assert exp.run_one(job) == finished  # reused, not retrained
    assert exp.plot_curves(tmp_path).is_file()  # the validation curve of its two epochs

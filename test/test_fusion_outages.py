"""Outages per sensor with the shipped fused model: when one sensor drops out, the others carry
the estimate, and its standard deviation grows only by that sensor's share; when all drop out,
it grows many times over."""

from __future__ import annotations

import numpy as np
import pytest

from rkn_ros.core.checkpoint import read_metadata
from rkn_ros.runtime import StreamingEstimator
from rkn_ros.train.data import generate_dataset

ARRAYS = {"image": "images", "image_side": "images_side", "imu": "imu", "encoder": "encoder"}
OUTAGE = range(30, 60)  # steps with the dropped sensors hidden


@pytest.fixture(scope="module")
def outage_std(one_thread_module):
    meta = read_metadata("models/fusion")
    spec = dict(meta.training.recipe["data"]["validation"]["generate"])
    spec.update(num_sequences=4, steps=60, seed=9004)  # the evaluation's seed
    data = generate_dataset(spec)
    est = StreamingEstimator.from_checkpoint("models/fusion", device="cpu")
    names = list(est.inputs)
    assert set(names) == set(ARRAYS)

    def mean_std(dropped: set[str]) -> float:
        """Mean angle standard deviation over the outage, ``dropped`` hidden in it."""
        stds = []
        for s in range(data.num_sequences):
            est.reset()
            for t in range(data.sequence_length):
                hide = t in OUTAGE
                inputs = {
                    n: data.arrays[ARRAYS[n]][s, t]
                    if data.arrays[ARRAYS[n] + "_valid"][s, t] and not (hide and n in dropped)
                    else None
                    for n in names
                }
                out = est.step(inputs)
                assert np.isfinite(out.position).all() and np.isfinite(out.position_std).all()
                if hide:
                    stds.append(float(out.position_std[0]))
        return float(np.mean(stds))

    return {name: mean_std({name}) for name in names} | {
        "none": mean_std(set()), "all": mean_std(set(names))}


@pytest.fixture(scope="module")
def one_thread_module():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_one_sensor_out_grows_the_std_by_its_share_only(outage_std):
    fused = outage_std["none"]
    for name in ARRAYS:
        assert outage_std[name] < 1.5 * fused, (name, outage_std)


def test_every_sensor_out_grows_the_std_many_times(outage_std):
    fused = outage_std["none"]
    assert outage_std["all"] > 3 * fused, outage_std

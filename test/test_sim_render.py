"""Rendering (size, dtype, determinism, anti-aliasing, occlusion) and the image noise process."""

from __future__ import annotations

import numpy as np
import pytest

from rkn_ros.sim.image_noise import (
    CorrelatedNoise,
    apply_noise,
    keep_mask,
    noise_factors,
)
from rkn_ros.sim.pendulum import PendulumParams
from rkn_ros.sim.pendulum_sim import PendulumSimulator
from rkn_ros.sim.render import RenderParams, link_endpoints, render


@pytest.mark.parametrize("size, links", [(24, 1), (48, 4), (32, 2)])
def test_render_size_dtype_and_determinism(size, links):
    angles = np.random.default_rng(1).uniform(-3, 3, size=(70, links))
    params = RenderParams(image_size=size)
    first = render(angles, (1.0,) * links, params, chunk=16)
    second = render(angles, (1.0,) * links, params, chunk=64)     # chunking changes nothing
    assert first.dtype == np.uint8 and first.shape == (70, size, size)
    assert first.tobytes() == second.tobytes()
    assert np.all(first.reshape(70, -1).max(axis=1) == 255 if links == 1 else
                  first.reshape(70, -1).max(axis=1) > 100)          # something is drawn


def test_anti_aliasing_gives_intermediate_grey_levels():
    angles = np.array([[0.3]])
    smooth = render(angles, (1.0,), RenderParams(supersample=4))
    hard = render(angles, (1.0,), RenderParams(supersample=1))
    assert set(np.unique(hard)) <= {0, 255}
    assert np.count_nonzero((smooth > 0) & (smooth < 255)) >= 10


def test_pendulum_hangs_down_at_zero_and_points_right_at_half_pi():
    down = render(np.array([[0.0]]), (1.0,), RenderParams())[0]
    right = render(np.array([[np.pi / 2]]), (1.0,), RenderParams())[0]
    assert down[20, 12] == 255 and down[3, 12] == 0          # bottom half lit, top dark
    assert right[12, 20] == 255 and right[12, 3] == 0


def _segment_mask(a, b, size, half_width):
    # an independent reference: a pixel centre within half_width of the segment
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    d = b - a
    t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / (d @ d), 0, 1)
    return np.hypot(xx - a[0] - t * d[0], yy - a[1] - t * d[1]) <= half_width


def test_quad_link_links_occlude_each_other():
    # the second link folds back across the first: where both cover a pixel, the later link's
    # grey must win (no max, no sum)
    levels = (250, 180, 110, 40)
    params = RenderParams(image_size=48, supersample=1, line_width=3.0, grey_levels=levels)
    angles = np.array([[0.0, np.pi - 0.6, 1.5, -1.0]])
    image = render(angles, (1.0,) * 4, params)[0]
    points = link_endpoints(angles, (1.0,) * 4, params)[0]
    masks = [_segment_mask(points[i], points[i + 1], 48, 1.5) for i in range(4)]
    later = [np.logical_or.reduce(masks[i + 1:]) if i < 3 else np.zeros_like(masks[0])
             for i in range(4)]
    overlap_12 = masks[0] & masks[1] & ~later[1]
    assert overlap_12.sum() >= 4
    assert np.all(image[overlap_12] == levels[1])
    only_1 = masks[0] & ~later[0]
    assert only_1.sum() >= 4 and np.all(image[only_1] == levels[0])
    for i in range(4):                                  # every link is visible somewhere
        assert np.any(image[masks[i] & ~later[i]] == levels[i])


def test_render_rejects_bad_input():
    with pytest.raises(ValueError, match=r"angles.*\[frames, 4\]"):
        render(np.zeros((3, 2)), (1.0,) * 4, RenderParams())
    with pytest.raises(ValueError, match="NaN"):
        render(np.full((1, 1), np.nan), (1.0,), RenderParams())
    with pytest.raises(ValueError, match="image_size"):
        RenderParams(image_size=4)
    with pytest.raises(ValueError, match="grey_levels"):
        RenderParams(grey_levels=(0,))
    with pytest.raises(ValueError, match="'line_width': expected a number of px, received 'x'"):
        RenderParams(line_width="x")
    with pytest.raises(ValueError, match=r"'grey_levels': expected a list of integers"):
        RenderParams.from_dict({"grey_levels": ["a"]})
    with pytest.raises(ValueError, match=r"grey_levels.*4"):
        RenderParams(grey_levels=(255,)).levels(4)


def test_noise_factors_stay_in_unit_interval_and_start_clean():
    f = noise_factors(np.random.default_rng(0), 500, 75)
    assert f.shape == (500, 75)
    assert f.min() >= 0.0 and f.max() <= 1.0
    assert np.all(f[:, :5] == 1.0)
    # correlated: a step moves at most 0.2 / (t2 - t1) <= 0.4; both extremes occur
    assert np.abs(np.diff(f[:, 5:], axis=1)).max() <= 0.4 + 1e-12
    assert (f == 0.0).mean() > 0.05 and (f[:, 5:] == 1.0).mean() > 0.05


def test_apply_noise_blends_by_factor():
    rng = np.random.default_rng(0)
    images = np.random.default_rng(1).integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    factors = np.array([[1.0, 0.0, 0.5], [1.0, 1.0, 0.0]])
    noisy = apply_noise(images, factors, rng)
    assert noisy.dtype == np.uint8 and noisy.shape == images.shape
    assert np.array_equal(noisy[factors == 1.0], images[factors == 1.0])
    assert not np.array_equal(noisy[0, 1], images[0, 1])
    with pytest.raises(ValueError, match="factors"):
        apply_noise(images, factors[:, :2], rng)


def test_keep_mask_keeps_first_five_and_about_half():
    valid = keep_mask(np.random.default_rng(0), 400, 50, keep_prob=0.5)
    assert valid.dtype == bool and np.all(valid[:, :5])
    assert 0.47 < valid[:, 5:].mean() < 0.53


def test_streaming_noise_first_frames_clean_then_noisy():
    noise = CorrelatedNoise(np.random.default_rng(3))
    image = np.full((24, 24), 200, dtype=np.uint8)
    factors = []
    for t in range(300):
        noisy, f = noise.step(image)
        factors.append(f)
        if t < 5:
            assert np.array_equal(noisy, image)
    assert min(factors) >= 0.0 and max(factors) <= 1.0 and min(factors) < 0.5


def test_stepping_simulator_matches_renderer_and_is_seeded():
    params = PendulumParams.quad_link()
    render_params = RenderParams(image_size=48)
    sim_a = PendulumSimulator(params, render_params, seed=7)
    sim_b = PendulumSimulator(params, render_params, seed=7)
    first = sim_a.reset()
    assert np.array_equal(first[0], sim_b.reset()[0])
    image, angles, velocities = sim_a.step()
    image_b, angles_b, _ = sim_b.step()
    assert image.shape == (48, 48) and image.dtype == np.uint8
    assert angles.shape == (4,) and velocities.shape == (4,)
    assert np.array_equal(angles, angles_b) and np.array_equal(image, image_b)
    assert np.array_equal(image, render(angles[None], params.lengths, render_params)[0])
    assert not np.array_equal(first[1], angles)           # it moved


def test_render_matches_a_brute_force_supersampled_reference():
    # an independent float64 implementation: every canvas sample, every link, in order
    params = RenderParams(image_size=24, supersample=4, line_width=2.5)
    angles = np.random.default_rng(4).uniform(-4, 4, size=(6, 3))
    images = render(angles, (1.0, 0.7, 0.5), params)
    points = link_endpoints(angles, (1.0, 0.7, 0.5), params)
    levels = params.levels(3).astype(np.float64)
    centres = (np.arange(96) + 0.5) / 4
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    for k in range(6):
        canvas = np.zeros((96, 96))
        for i in range(3):
            a, b = points[k, i], points[k, i + 1]
            d = b - a
            t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / (d @ d), 0, 1)
            inside = np.hypot(xx - a[0] - t * d[0], yy - a[1] - t * d[1]) <= 1.25
            canvas[inside] = levels[i]
        reference = np.rint(canvas.reshape(24, 4, 24, 4).mean(axis=(1, 3)) * 255)
        differ = np.abs(images[k].astype(float) - reference) > 0
        assert differ.sum() <= 2, differ.sum()          # only samples exactly on an edge


def test_stepping_simulator_with_image_noise_keeps_the_first_frames_clean():
    noisy = PendulumSimulator(seed=2, image_noise=True)
    factors, images, clean = [], [], []
    image, angles, _ = noisy.reset()
    for t in range(40):
        if t:
            image, angles, _ = noisy.step()
        factors.append(noisy.noise_factor)
        images.append(image)
        clean.append(render(angles[None], (1.0,), RenderParams())[0])
    for t in range(5):
        assert factors[t] == 1.0 and np.array_equal(images[t], clean[t])
    assert min(factors) < 1.0
    assert any(not np.array_equal(i, c) for i, c in zip(images, clean, strict=True))

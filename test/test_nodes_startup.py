"""The estimator node's start-up checks and parameter table, in process (no rclpy, no DDS)."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import yaml
from test_runtime_support import (
    make_joint_checkpoint,
    make_monotone_pendulum_checkpoint,
    make_pendulum_checkpoint,
)

from rkn_ros.nodes.estimator_params import (
    PARAMETERS,
    EstimatorSettings,
    render_markdown,
    render_yaml,
)
from rkn_ros.nodes.startup import StartupError, check_settings, load_estimator, plan_serving
from rkn_ros.runtime.ticks import TickConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup_checkpoints")
    paths = {
        "pendulum": make_pendulum_checkpoint(root / "pendulum"),
        "joint": make_joint_checkpoint(root / "joint"),
        "monotone": make_monotone_pendulum_checkpoint(root / "monotone"),
    }
    settings = EstimatorSettings.defaults(device="cpu", warmup_steps=0, cpu_backend="torchscript")
    loaded = {
        name: load_estimator(dataclasses.replace(settings, model_path=str(p)), p)[0]
        for name, p in paths.items()
    }
    return paths, loaded


def settings(**values) -> EstimatorSettings:
    return EstimatorSettings.defaults(model_path="model", **values)


def refusal(check, *args) -> str:
    with pytest.raises(StartupError) as err:
        check(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    ("model", "values", "expected"),
    [
        ("pendulum", {"frequency": 50.0}, "trained with dt 0.05 s and takes no dt input"),
        ("joint", {"joint_names": ["a"]},
         "joint_names ['a'] has 1 entries, the model's vector inputs ['joints'] take 3"),
        ("joint", {"output_joint_names": ["a", "b"]},
         "output_joint_names ['a', 'b'] has 2 names, the model estimates 1 joints"),
        ("joint", {"tick_on": "image"}, "tick_on 'image' but model"),
        ("pendulum", {"tick_on": "joint_states"}, "tick_on 'joint_states' but model"),
        ("pendulum", {"tick_on": "camera"}, "has no such input (its inputs: ['image'])"),
        ("joint", {"image_height": 24, "image_width": 24, "resize_images": True},
         "image_height/image_width set but the model has no image input"),
        ("pendulum", {"publish_markers": True, "marker_link_lengths": [1.0, 2.0]},
         "marker_link_lengths has 2 values for 1 joints"),
    ],
)
def test_a_configuration_the_model_does_not_match_is_refused_in_one_line(
    models, model, values, expected
):
    _, loaded = models
    assert expected in refusal(plan_serving, settings(**values), loaded[model])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"model_path": ""}, "parameter 'model_path' is empty"),
        ({"tick_on": ""}, "tick_on must be 'timer' or an input name, got ''"),
    ],
)
def test_settings_refused_before_the_model_loads(values, expected):
    assert expected in refusal(check_settings, EstimatorSettings.defaults(**{
        "model_path": "model", **values}))


def test_a_model_that_cannot_load_or_be_pinned_is_refused_in_one_line(models, tmp_path):
    paths, _ = models
    corrupt = make_pendulum_checkpoint(tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    cases = [
        (settings(), tmp_path / "missing", "does not exist"),
        (settings(), corrupt, f"cannot serve model {corrupt}"),
        (settings(image_height=48, image_width=48), paths["pendulum"],
         "image size [48, 48] requested"),
        (settings(image_height=24, image_width=24), paths["joint"],
         "image_shape given but the model has no image input"),
        (settings(cpu_affinity=[4096]), paths["pendulum"], "not available to this process"),
    ]
    for values, path, expected in cases:
        assert expected in refusal(load_estimator, values, path), expected


def test_a_matching_configuration_gives_the_serving_plan(models):
    _, loaded = models
    plan = plan_serving(
        settings(tick_on="joint_states", sensor_timeout=0.5, stamp_offset=0.01,
                 joint_names=["joint", "flexor/effort", "extensor:effort"]),
        loaded["joint"],
    )
    assert plan.vector_sensors == (("joints", 3),)
    assert plan.joint_entries == (("joint", "position"), ("flexor", "effort"),
                                  ("extensor", "effort"))
    assert plan.ticks == TickConfig(
        period_ns=round(1e9 * loaded["joint"].dt), inputs=("joint_states",),
        tick_on="joint_states", fixed_dt=not loaded["joint"].uses_dt,
        sensor_timeout_ns=500_000_000, max_future_ns=500_000_000, stamp_offset_ns=10_000_000,
    )
    image = plan_serving(settings(tick_on="image", publish_markers=True), loaded["monotone"])
    assert image.image_sensor == "image" and image.ticks.inputs == ("image",)
    assert image.link_lengths == (1.0,) and image.period_s == pytest.approx(0.05)
    assert any("empty frame_id" in w for w in image.warnings)
    timer = plan_serving(settings(reset_after_gap=5.0), loaded["joint"])
    assert timer.ticks.reset_after_gap_ns == 0 and "reset_after_gap is ignored" in timer.warnings[0]


# ------------------------------------------------------------------ the parameter table
def test_the_settings_hold_exactly_the_tables_parameters():
    assert [f.name for f in dataclasses.fields(EstimatorSettings)] == [p.name for p in PARAMETERS]
    for spec in PARAMETERS:
        numeric = isinstance(spec.default, int | float) and not isinstance(spec.default, bool)
        assert spec.description and (spec.low is not None) == numeric, spec.name
        assert spec.array is None or spec.default == [], spec.name


def test_estimator_yaml_is_the_one_printed_from_the_table():
    assert (REPO / "config" / "estimator.yaml").read_text() == render_yaml()
    values = yaml.safe_load(render_yaml())["/**/rkn_estimator"]["ros__parameters"]
    assert values == {p.name: p.default for p in PARAMETERS}


def test_the_docs_parameter_table_is_the_one_printed_from_the_table():
    text = (REPO / "docs" / "runtime.md").read_text()
    found = re.search(r"<!-- parameters: begin.*?-->\n(.*?)<!-- parameters: end -->", text, re.S)
    assert found and found.group(1) == render_markdown()


def test_every_config_names_only_parameters_of_the_table():
    names = {p.name for p in PARAMETERS}
    for path in sorted((REPO / "config").glob("*.yaml")):
        section = yaml.safe_load(path.read_text()).get("/**/rkn_estimator")
        if section is not None:
            assert set(section["ros__parameters"]) <= names, path.name


def test_the_start_up_checks_and_the_table_need_no_rclpy():
    import subprocess

    code = ("import sys, rkn_ros.nodes.startup, rkn_ros.nodes.estimator_params, "
            "rkn_ros.runtime.ticks; sys.exit('rclpy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_a_fused_model_gets_one_input_per_sensor_each_on_its_own_topic():
    fusion = REPO / "models" / "fusion"
    est = load_estimator(settings(device="cpu", warmup_steps=0), fusion)[0]
    plan = plan_serving(settings(tick_on="image_side"), est, {"imu": "/sim/imu", "encoder": ""})
    assert [(source, sub.topic, sub.kind) for source, sub in plan.sensors] == [
        ("image", "~/image", "image"), ("image_side", "~/image_side", "image"),
        ("imu", "/sim/imu", "imu"), ("encoder", "~/encoder", "joint_state"),
    ]
    assert plan.ticks.inputs == ("image", "image_side", "imu", "encoder")
    assert plan.ticks.tick_on == "image_side" and plan.image_sensor == "image"
    assert plan.vector_sensors == ()
    assert "the model's sensors are" in refusal(plan_serving, settings(), est, {"camera": "/c"})
    assert "several image inputs" in refusal(
        plan_serving, settings(image_height=24, image_width=24, resize_images=True), est)

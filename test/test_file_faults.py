"""Hostile and corrupt files, one test per fault class, each through the real ``rkn-ros`` CLI
in a child process: one error line naming the field, exit code 1, no traceback, and the
child's peak RSS under :data:`PEAK_RSS_MB` (importing torch alone takes about 300 MB; each
fault, had its size been trusted, would take gigabytes)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rkn_ros.core.checkpoint import (
    METADATA_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "pneumatic"
TINY = REPO / "config" / "train" / "tiny.yaml"
PEAK_RSS_MB = 700

# Runs the CLI and writes its own peak RSS (KiB) where RSS_FILE says: VmHWM, the peak of this
# process image. (ru_maxrss would also count the pytest process it was forked from: Linux
# carries the parent's peak across fork and exec into the child's ru_maxrss.)
WRAPPER = """
import os, sys
from rkn_ros.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["RSS_FILE"], "w") as handle:
        handle.write(peak)
sys.exit(code)
"""


def run_cli(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[str, float]:
    """Run ``rkn-ros ARGS``; assert exit code 1 and one stderr line; (line, peak RSS MB)."""
    rss_file = tmp_path / "rss.txt"
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "RSS_FILE": str(rss_file), **(env or {})}, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    peak_mb = int(rss_file.read_text()) / 1024
    assert peak_mb < PEAK_RSS_MB, f"peak RSS {peak_mb:.0f} MB"
    return lines[0], peak_mb


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A current-format copy of a shipped model (real weights, real metadata)."""
    model, meta = load_checkpoint(SHIPPED)
    return save_checkpoint(tmp_path / "ckpt", model, meta)


def evaluate(tmp_path: Path, folder: Path, data: Path | None = None, **kw) -> str:
    line, _ = run_cli(tmp_path, "evaluate", str(folder), "--data",
                      str(data or tmp_path / "no_data_needed"), **kw)
    assert line.startswith("rkn-ros evaluate: error:")
    return line


def edit_metadata(folder: Path, edit) -> None:
    data = yaml.safe_load((folder / METADATA_FILE).read_text())
    edit(data)
    (folder / METADATA_FILE).write_text(yaml.safe_dump(data))


WRONG_TYPES = [
    (lambda d: d.update(name=5), "name: expected a string, got 5"),
    (lambda d: d.update(name=None), "name: must not be null"),
    (lambda d: d["inputs"]["joints"].update(names=[1, 2, 3]), "inputs.joints.names[0]"),
]
ABSURD_SIZES = [
    (lambda d: d["model"].update(latent_obs_dim=10**9), "model.latent_obs_dim: at most 4096"),
    (lambda d: d.update(dt=1e9), "dt: expected a number >= 1e-06 and <= 3600"),
    (lambda d: d["model"].update(encoder_hidden=[10**7]), "model.encoder_hidden: at most"),
    (lambda d: (d["inputs"]["joints"].update(shape=[10**8]),
                d["model"]["sensors"][0].update(shape=[10**8])), "inputs.joints.shape[0]"),
]
BAD_STD = [
    (float("nan"), "normalization.inputs.joints.std[1]: expected a finite number"),
    (float("inf"), "normalization.inputs.joints.std[1]: expected a finite number"),
    (1e-30, "normalization.inputs.joints.std[1]: expected a number >= 1e-06"),
    (0.0, "normalization.inputs.joints.std[1]: expected a number >= 1e-06"),
]


def _set_std(value: float):
    return lambda d: d["normalization"]["inputs"]["joints"]["std"].__setitem__(1, value)


@pytest.mark.parametrize(("edit", "field"), [*WRONG_TYPES, *ABSURD_SIZES,
                                             *[(_set_std(v), f) for v, f in BAD_STD]])
def test_each_variant_is_refused_naming_the_field(checkpoint, edit, field):
    """The variants in process (milliseconds); the CLI tests below run one of each class."""
    edit_metadata(checkpoint, edit)
    with pytest.raises(CheckpointError) as info:
        read_metadata(checkpoint)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_wrong_types(tmp_path, checkpoint):
    edit, field = WRONG_TYPES[0]
    edit_metadata(checkpoint, edit)
    assert field in evaluate(tmp_path, checkpoint)


def test_alias_bomb(tmp_path, checkpoint):
    """Nine levels of nine aliases would expand to 10^9 entries."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    (checkpoint / METADATA_FILE).write_text("\n".join(lines) + "\n")
    assert "anchors and aliases are not allowed" in evaluate(tmp_path, checkpoint)


def test_huge_metadata_file_is_not_parsed_in_process(checkpoint):
    with (checkpoint / METADATA_FILE).open("r+b") as handle:
        handle.truncate(3 << 30)  # sparse: no disk, and refused before a byte is read
    with pytest.raises(CheckpointError, match="more than the 1048576 a config may have"):
        read_metadata(checkpoint)


def test_absurd_layer_size(tmp_path, checkpoint):
    edit, field = ABSURD_SIZES[0]
    edit_metadata(checkpoint, edit)
    assert field in evaluate(tmp_path, checkpoint)


def test_absurd_image_shape_in_process(tmp_path):
    model, meta = load_checkpoint(REPO / "models" / "pendulum")
    folder = save_checkpoint(tmp_path / "pendulum", model, meta)

    def edit(d):
        d["inputs"]["image"]["shape"] = [100000, 100000]
        d["model"]["sensors"][0]["shape"] = [100000, 100000]

    edit_metadata(folder, edit)
    with pytest.raises(CheckpointError, match=r"inputs.image.shape\[0\]: expected an integer "
                                              r">= 1 and <= 4096"):
        read_metadata(folder)


def test_non_finite_std(tmp_path, checkpoint):
    value, field = BAD_STD[0]
    edit_metadata(checkpoint, _set_std(value))
    assert field in evaluate(tmp_path, checkpoint)


def test_sparse_huge_weights_file(tmp_path, checkpoint):
    with (checkpoint / WEIGHTS_FILE).open("r+b") as handle:
        handle.truncate(4 << 30)
    assert "more than the 1073741824 a checkpoint may have" in evaluate(tmp_path, checkpoint)


def test_sparse_padded_weights_file_is_refused_from_its_header_in_process(checkpoint):
    """Under the size limit, a padded file is refused from its header, unread."""
    with (checkpoint / WEIGHTS_FILE).open("r+b") as handle:
        handle.truncate(900 << 20)
    with pytest.raises(CheckpointError, match=r"tensors declare \d+ bytes of data, the file has "):
        load_checkpoint(checkpoint)


def test_tampered_metadata(tmp_path, checkpoint):
    edit_metadata(checkpoint, lambda d: d["normalization"]["inputs"]["joints"]["mean"]
                  .__setitem__(0, 0.5))
    assert "checkpoint_sha256 does not match" in evaluate(tmp_path, checkpoint)


def _npz_with_member(folder: Path, name: str, payload: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.yaml").write_text("format_version: 1\n")
    with zipfile.ZipFile(folder / "data.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name + ".npy", payload)


def test_npz_declaring_a_huge_array(tmp_path):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    folder = tmp_path / "data"
    _npz_with_member(folder, "joint_obs", buffer.getvalue() + b"\0" * 64)
    line = evaluate(tmp_path, SHIPPED, folder)
    assert "array 'joint_obs': header declares shape [1000000, 1000000]" in line


def test_zip_bomb_member(tmp_path):
    """256 MB of zeros in a member of about 250 kB, under a 64 MB data budget."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("format_version: 1\n")
    with zipfile.ZipFile(folder / "data.npz", "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("images.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(
            member, {"descr": "|u1", "fortran_order": False, "shape": (256 << 20,)})
        chunk = bytes(1 << 20)
        for _ in range(256):
            member.write(chunk)
    assert (folder / "data.npz").stat().st_size < 2 << 20
    line = evaluate(tmp_path, SHIPPED, folder, env={"RKN_ROS_DATA_BUDGET_MB": "64"})
    assert "array 'images': declares" in line and "RKN_ROS_DATA_BUDGET_MB" in line


def _recipe(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(TINY.read_text())
    edit(data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_absurd_num_threads(tmp_path):
    path = _recipe(tmp_path, lambda d: d["training"].update(num_threads=10**6))
    line, _ = run_cli(tmp_path, "train", str(path), "--out", str(tmp_path / "out"))
    assert f"training.num_threads: expected an integer >= 1 and <= {os.cpu_count()}" in line


def test_absurd_num_sequences_in_a_recipe_in_process():
    from rkn_ros.core.typed_config import ConfigError
    from rkn_ros.train.data import generate_dataset

    spec = {"generator": "pendulum", "num_sequences": 5 * 10**6, "steps": 1000}
    with pytest.raises(ConfigError, match=r"num_sequences: 5000000 sequences x 1000 steps .* "
                                          r"more than the memory budget"):
        generate_dataset(spec)
    with pytest.raises(ConfigError, match=r"generate\.num_sequences: expected an integer >= 1 "
                                          r"and <= 10000000"):
        generate_dataset({**spec, "num_sequences": 10**9})


def test_absurd_num_sequences_in_the_generator(tmp_path):
    line, _ = run_cli(tmp_path, "generate", "pneumatic", "--out", str(tmp_path / "d"),
                      "--sequences", str(10**8), "--steps", "1000", "--no-progress")
    assert line.startswith("rkn-ros generate: error: num_sequences: 100000000 sequences")
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------- properties
METADATA_TEXT = (SHIPPED / METADATA_FILE).read_text()


def _load_or_refuse(folder: Path) -> None:
    try:
        load_checkpoint(folder)
    except CheckpointError as err:
        assert "\n" not in str(err)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_arbitrary_metadata_bytes_raise_only_checkpoint_error(checkpoint, blob):
    (checkpoint / METADATA_FILE).write_bytes(blob)
    _load_or_refuse(checkpoint)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, len(METADATA_TEXT) - 1), st.text(max_size=12))
def test_edited_metadata_text_raises_only_checkpoint_error(checkpoint, at, text):
    (checkpoint / METADATA_FILE).write_text(METADATA_TEXT[:at] + text + METADATA_TEXT[at + 1:])
    _load_or_refuse(checkpoint)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.integers(0, 64))
def test_arbitrary_weights_bytes_raise_only_checkpoint_error(checkpoint, blob, keep):
    weights = checkpoint / WEIGHTS_FILE
    original = weights.read_bytes()
    weights.write_bytes(original[:keep] + blob)
    _load_or_refuse(checkpoint)
    weights.write_bytes(original)


def _lying_npz(path: Path, declared: int, actual: int) -> None:
    """An npz whose member says it holds ``declared`` bytes of uint8 but expands to
    ``actual`` (sizes patched in the local and central zip headers)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": (declared,)})
    header = buffer.getvalue()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images.npy", header + bytes(actual))
    blob = bytearray(path.read_bytes())
    true_size = (len(header) + actual).to_bytes(4, "little")
    fake_size = (len(header) + declared).to_bytes(4, "little")
    local = blob.index(b"PK\x03\x04")
    central = blob.index(b"PK\x01\x02")
    assert blob[local + 22:local + 26] == true_size == blob[central + 24:central + 28]
    blob[local + 22:local + 26] = fake_size
    blob[central + 24:central + 28] = fake_size
    path.write_bytes(bytes(blob))


def test_member_expanding_past_its_declared_size_is_cut_off(tmp_path):
    """The data are read into an array of the declared size only; the rest is never
    decompressed, and the member is refused (its checksum covers what it really holds)."""
    from rkn_ros.data.dataset import DatasetError, read_npz

    path = tmp_path / "lying.npz"
    _lying_npz(path, declared=1000, actual=64 << 20)
    with pytest.raises(DatasetError, match=r"array 'images': .*Bad CRC-32"):
        read_npz(path)


def test_encrypted_member_is_refused_without_a_password_prompt(tmp_path):
    """zipfile raises RuntimeError (asking for a password) on a member flagged encrypted."""
    from rkn_ros.data.dataset import DatasetError, npz_bytes, read_npz

    blob = bytearray(npz_bytes({"a": np.arange(12, dtype=np.float32)}))
    local, central = blob.index(b"PK\x03\x04"), blob.index(b"PK\x01\x02")
    blob[local + 6] |= 0x1  # general purpose flag bit 0: encrypted
    blob[central + 8] |= 0x1
    path = tmp_path / "encrypted.npz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DatasetError, match=r"array 'a': is encrypted"):
        read_npz(path)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.integers(0, 200))
def test_arbitrary_npz_bytes_raise_only_dataset_error(tmp_path, blob, keep):
    from rkn_ros.data.dataset import DatasetError, npz_bytes, read_npz

    good = npz_bytes({"a": np.arange(12, dtype=np.float32).reshape(3, 4)})
    path = tmp_path / "fuzz.npz"
    path.write_bytes(good[:keep] + blob + good[keep + len(blob):])
    try:
        arrays = read_npz(path)
    except DatasetError as err:
        assert "\n" not in str(err)
    else:
        assert all(isinstance(a, np.ndarray) for a in arrays.values())

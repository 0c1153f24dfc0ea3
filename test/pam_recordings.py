"""The PAM recordings the tests read: the full ``pam_dev.npz`` where it exists (see
``rkn_ros.data.pam.default_pam_file``), otherwise the subset shipped in test/fixtures/pam (48
episodes the shipped PAM model never trained on; its README says where they come from)."""

from __future__ import annotations

import json
from pathlib import Path

from rkn_ros.data.pam import default_pam_file

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "pam"
FULL_FILE = default_pam_file()
USES_FIXTURE = not FULL_FILE.is_file()
PAM_FILE = FIXTURE_DIR / "pam_fixture.npz" if USES_FIXTURE else FULL_FILE


def fixture_expected() -> dict:
    """The shipped PAM model's figures on the fixture (written by make_fixture.py)."""
    return json.loads((FIXTURE_DIR / "expected.json").read_text())


def shared_folder_with(root: Path) -> Path:
    """A folder laid out as the shared one (``data/pam/pam_dev.npz``) holding PAM_FILE, for
    processes that look the recordings up themselves (set RKN_ROS_SHARED to it)."""
    folder = root / "shared"
    (folder / "data" / "pam").mkdir(parents=True, exist_ok=True)
    link = folder / "data" / "pam" / "pam_dev.npz"
    if not link.exists():
        link.symlink_to(PAM_FILE)
    return folder

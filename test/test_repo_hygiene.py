"""The repository stands alone: it dates figures by date and commit, cites the paper rather than
files outside the repository, and keeps BENCHMARKS.md a reference.

The patterns below are written so that this file does not match them itself.
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Work-log wording instead of dates and commit ids, and citations of issue numbers.
ROUNDS_OF_WORK = re.compile(r"sessions? [0-9]+|this[ ]session|session[ ]notes", re.IGNORECASE)
ISSUE_NUMBER = re.compile(r"\bissues?[ ]#?[0-9]+", re.IGNORECASE)
# Background documents that live beside the repository, not in it (case matters:
# docs/design.md is the repository's own).
OUTSIDE_DOCUMENT = re.compile(r"\bDESIGN[.]md|\bRKN[.]md")
SHARED_FOLDER = re.compile(r"[.][.]/shared")

# Where the shared folder beside the repository may be named: where the full PAM recordings
# are looked for (code, the paths in recipes and checkpoints that name them, the tests that use
# them where they exist) and the README's line that says where they come from.
SHARED_ALLOWED = {
    "README.md",
    "benchmarks/online_vs_offline.py",
    "benchmarks/pam_compare.py",
    "config/train/pam.yaml",
    "docs/runtime.md",
    "models/pam/evaluation.json",
    "models/pam/model.yaml",
    "models/regenerate.py",
    "rkn_ros/data/pam_recording.py",
    "rkn_ros/nodes/pam_replay_node.py",
    "rkn_ros/train/config.py",
    "test/test_data_pam.py",
    "test/test_models_shipped.py",
    "test/test_nodes.py",
    "test/test_nodes_processes.py",
    "test/fixtures/pam/README.md",
    "test/pam_recordings.py",
    "test/test_train_cli.py",
}

BINARY_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".gif", ".pdf", ".safetensors", ".npz", ".npy", ".db3", ".mcap",
    ".onnx", ".pt", ".gz", ".zip",
}
BENCHMARKS_MAX_LINES = 400


@functools.lru_cache(maxsize=1)
def _tracked_text_files() -> dict[str, str]:
    """Every file git tracks or would add (not ignored) that reads as UTF-8 text, by its path
    relative to the root."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode()
    texts = {}
    for name in filter(None, listing.split("\0")):
        path = REPO / name
        if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def _hits(pattern: re.Pattern, texts: dict[str, str], allowed=frozenset()) -> list[str]:
    hits = []
    for name, text in texts.items():
        if name in allowed:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    return hits


def test_the_patterns_catch_what_they_are_for():
    # Assembled from pieces so that this file's own lines do not match.
    session, issue, shared = "session", "issue" + " 17", "../" + "shared"
    samples = {
        "a.md": f"measured in {session} 4\nthe Session{' '}notes\nas this {session} found\n",
        "b.py": f"# see {issue}\n",
        "c.md": f"the map: {shared}/DESIGN" + ".md\n",
        "d.py": '"""losses as RKN' + '.md defines them"""\n',
    }
    assert len(_hits(ROUNDS_OF_WORK, samples)) == 3
    assert _hits(ISSUE_NUMBER, samples) == [f"b.py:1: # see {issue}"]
    assert [h.split(":")[0] for h in _hits(OUTSIDE_DOCUMENT, samples)] == ["c.md", "d.py"]
    assert [h.split(":")[0] for h in _hits(SHARED_FOLDER, samples)] == ["c.md"]
    assert _hits(SHARED_FOLDER, samples, allowed={"c.md"}) == []
    assert _hits(OUTSIDE_DOCUMENT, {"e.md": "see docs/design.md and the 5seeds_rkn.md table"}) == []


def test_no_figure_or_doc_is_dated_by_rounds_of_work_or_cites_an_issue_number():
    texts = _tracked_text_files()
    assert "BENCHMARKS.md" in texts and "test/test_repo_hygiene.py" in texts
    hits = _hits(ROUNDS_OF_WORK, texts) + _hits(ISSUE_NUMBER, texts)
    assert not hits, "date figures by date and commit id instead:\n" + "\n".join(hits)


def test_nothing_cites_documents_outside_the_repository():
    hits = _hits(OUTSIDE_DOCUMENT, _tracked_text_files())
    assert not hits, (
        "cite the paper's sections, or docs/design.md, instead:\n" + "\n".join(hits)
    )


def test_the_shared_folder_is_named_only_where_the_pam_recordings_are_looked_for():
    hits = _hits(SHARED_FOLDER, _tracked_text_files(), allowed=SHARED_ALLOWED)
    assert not hits, "only the PAM lookup may name the shared folder:\n" + "\n".join(hits)


def test_benchmarks_is_a_reference_not_a_log():
    lines = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < BENCHMARKS_MAX_LINES, f"BENCHMARKS.md has {len(lines)} lines"


def test_the_interfaces_doc_names_no_private_attribute():
    """docs/interfaces.md is the contract between layers: only public names belong in it."""
    text = (REPO / "docs" / "interfaces.md").read_text(encoding="utf-8")
    private = sorted(set(re.findall(r"[`.]_[a-z][a-z0-9_]*", text)))
    assert not private, private

"""Reading ``.npz`` files with memory bounded before it is spent, never unpickling.

Each member's ``.npy`` header is read from the zip stream first; the array it declares is
checked against the member's declared size, against the file's size (a stored member cannot
hold more than the file), and against a budget for the whole file, before a byte of data is
read. The data are then read into an array of exactly that size, so a compressed member that
expands to more than it declares (a zip bomb) is cut off and refused, never held in memory.

The budget defaults to :data:`DEFAULT_BUDGET` and can be set with the environment variable
``RKN_ROS_DATA_BUDGET_MB`` (documented in docs/data.md).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

DEFAULT_BUDGET = 16 << 30  # bytes of arrays one file may hold
BUDGET_ENV = "RKN_ROS_DATA_BUDGET_MB"
MAX_MEMBERS = 4096
_CHUNK = 1 << 22


class NpzError(ValueError):
    """An ``.npz`` file that cannot be read safely; one line naming the file and member."""


def data_budget() -> int:
    """The byte budget for one ``.npz`` file: ``RKN_ROS_DATA_BUDGET_MB`` or the default."""
    text = os.environ.get(BUDGET_ENV)
    if text is None:
        return DEFAULT_BUDGET
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise NpzError(f"{BUDGET_ENV}: expected an integer number of MiB >= 1, got {text!r}")
    return value << 20


def _read_header(stream, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise NpzError(f"{where}: not a readable .npy header ({err})") from err
    if dtype.hasobject:
        raise NpzError(f"{where}: holds Python objects, which cannot be read without unpickling")
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int,
                 budget_left: int, where: str) -> np.ndarray:
    if info.compress_type == zipfile.ZIP_STORED and info.file_size > file_size:
        raise NpzError(f"{where}: declares {info.file_size} bytes, more than the file's "
                       f"{file_size}")
    if info.file_size > budget_left:
        raise NpzError(f"{where}: declares {info.file_size} bytes, more than the "
                       f"{budget_left} left of the data budget ({BUDGET_ENV})")
    with archive.open(info) as stream:
        shape, fortran, dtype = _read_header(stream, where)
        count = 1
        for side in shape:
            count *= side
        nbytes = count * dtype.itemsize
        header = stream.tell()
        if header + nbytes != info.file_size:
            raise NpzError(f"{where}: header declares shape {list(shape)} of {dtype} "
                           f"({nbytes} bytes) but the member holds {info.file_size - header}")
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        filled = 0
        try:
            while filled < nbytes:
                got = stream.readinto(view[filled:filled + _CHUNK])
                if not got:
                    raise NpzError(f"{where}: ends after {filled} of {nbytes} bytes")
                filled += got
            if stream.read(1):
                raise NpzError(f"{where}: holds more data than it declares")
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise NpzError(f"{where}: corrupt ({err})") from err
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def read_npz(path: str | Path, budget: int | None = None) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, checked as the module docstring says (NpzError)."""
    path = Path(path)
    budget = data_budget() if budget is None else budget
    try:
        file_size = path.stat().st_size
        if not zipfile.is_zipfile(path):
            # np.load would take any non-zip file for a pickle
            raise NpzError(f"{path}: not a readable .npz file (not a zip archive)")
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise NpzError(f"{path}: {len(members)} members, more than {MAX_MEMBERS}")
            arrays: dict[str, np.ndarray] = {}
            left = budget
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise NpzError(f"{path}: member {info.filename!r} is not an .npy array")
                where = f"{path}: array {info.filename[:-4]!r}"
                if info.flag_bits & 0x1:  # zipfile would ask for a password (RuntimeError)
                    raise NpzError(f"{where}: is encrypted")
                arrays[info.filename[:-4]] = _read_member(archive, info, file_size, left, where)
                left -= arrays[info.filename[:-4]].nbytes
            return arrays
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError, zlib.error) as err:
        raise NpzError(f"{path}: not a readable .npz file ({err})") from err

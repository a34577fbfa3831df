"""
Reading an import bundle: a zip holding one OpenAPI spec and handler ``.rs`` files.

``read_bundle(data)`` is plain blocking code over bytes in memory; the caller
runs it in a thread pool. It never writes to the disk, and it refuses, before
reading any content:

* entries whose names could escape a folder if extracted (a ``..`` component,
  an absolute name, a drive letter) or that are symlinks (``S_IFLNK`` in the
  external attributes): 400 naming the entry;
* more than ``MAX_ENTRIES`` entries, or more than ``MAX_UNCOMPRESSED`` bytes
  uncompressed by the headers: 413. The count and the central directory's size
  are checked from the end record before ``zipfile`` parses the directory, so
  a forged directory of millions of entries is never loaded.

Headers can lie, so the bytes actually inflated are counted again while
reading: an entry yielding more than its header said, or more than the total
allowance, is a 413 as well.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field

from edgegw_tx.admin.errors import BadRequest, PayloadTooLarge

MAX_ENTRIES = 1000
MAX_UNCOMPRESSED = 50 * 1024 * 1024
# Generous for MAX_ENTRIES entries with long names and extra fields.
MAX_CENTRAL_DIRECTORY = 4 * 1024 * 1024
SPEC_NAMES = ("openapi.yaml", "openapi.yml", "openapi.json")
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_CHUNK = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class Bundle:
    """What a bundle holds: its spec's name and text, and each ``.rs`` file's bytes by name."""

    spec_name: str
    spec_text: str
    handlers: dict[str, bytes] = field(default_factory=dict)


def _ignored(name: str) -> bool:
    """Folders and the litter of archivers (macOS resource forks, Finder files)."""
    base = name.rsplit("/", 1)[-1]
    return (
        name.endswith("/")
        or name.startswith("__MACOSX/")
        or base.startswith("._")
        or base == ".DS_Store"
    )


def check_entry_name(info: zipfile.ZipInfo) -> None:
    """``BadRequest`` naming an entry that could escape the folder it is extracted to."""
    name = info.filename
    shown = name if len(name) <= 200 else name[:200] + "..."
    if name.startswith(("/", "\\")):
        raise BadRequest(f"bundle entry '{shown}' has an absolute name", entry=name)
    if _DRIVE.match(name):
        raise BadRequest(f"bundle entry '{shown}' names a drive", entry=name)
    if ".." in re.split(r"[\\/]", name):
        raise BadRequest(f"bundle entry '{shown}' has a '..' component", entry=name)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadRequest(f"bundle entry '{shown}' is a symbolic link", entry=name)


def _end_record(data: bytes) -> tuple[int, int] | None:
    """
    (entries, central directory size) from the end-of-central-directory record
    (zip64 aware), or ``None`` when there is none; ``zipfile._EndRecData`` has
    parsed it since Python 2 and is what ``ZipFile`` itself uses.
    """
    # typeshed leaves zipfile's private helpers out.
    endrec = zipfile._EndRecData(io.BytesIO(data))  # type: ignore[attr-defined]
    if not endrec:
        return None
    entries: int = endrec[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    size: int = endrec[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    return entries, size


def _too_many_entries(count: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the bundle has {count} entries; at most {MAX_ENTRIES} are allowed")


def _too_big() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the bundle is larger than {MAX_UNCOMPRESSED // (1024 * 1024)} MiB uncompressed"
    )


def open_zip(data: bytes) -> zipfile.ZipFile:
    """A ``ZipFile`` over ``data`` whose directory passed the count and size checks."""
    if not data or not data.startswith(b"PK"):
        raise BadRequest("not a zip archive")
    record = _end_record(data)
    if record is None:
        raise BadRequest("not a zip archive")
    count, directory_size = record
    if count > MAX_ENTRIES:
        raise _too_many_entries(count)
    if directory_size > MAX_CENTRAL_DIRECTORY:
        raise PayloadTooLarge(
            f"the bundle's central directory is larger than {MAX_CENTRAL_DIRECTORY} bytes"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise BadRequest(f"not a zip archive: {e}")
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _too_many_entries(len(infos))
    for info in infos:
        check_entry_name(info)
    if sum(info.file_size for info in infos) > MAX_UNCOMPRESSED:
        raise _too_big()
    return archive


class _Budget:
    """The uncompressed bytes still allowed, counted as they are inflated."""

    def __init__(self) -> None:
        self.left = MAX_UNCOMPRESSED

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        """The entry's bytes, inflated under the budget and the size its header claims."""
        chunks = []
        size = 0
        try:
            with archive.open(info) as entry:
                while True:
                    chunk = entry.read(_CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    self.left -= len(chunk)
                    if self.left < 0:
                        raise _too_big()
                    if size > info.file_size:
                        raise PayloadTooLarge(
                            f"bundle entry '{info.filename}' is larger than its header says"
                        )
                    chunks.append(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
            # Corrupt data, a bad CRC, an unsupported compression or encryption.
            raise BadRequest(f"bundle entry '{info.filename}' cannot be read: {e}", entry=info.filename)
        return b"".join(chunks)


def _strip_common_folder(files: dict[str, zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """``{name: info}`` without a single top folder that wraps everything (``petstore/...``)."""
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        prefix = tops.pop() + "/"
        return {name[len(prefix):]: info for name, info in files.items()}
    return files


def _pick_spec(names: Collection[str]) -> str:
    """The name of the bundle's OpenAPI document: the one at its root, or the only one."""
    at_root = sorted(n for n in names if n.lower() in SPEC_NAMES)
    if len(at_root) == 1:
        return at_root[0]
    if len(at_root) > 1:
        raise BadRequest(
            "the bundle has several specs at its root: {}; keep one".format(", ".join(at_root))
        )
    looking = sorted(n for n in names if n.lower().endswith(SPEC_SUFFIXES))
    if len(looking) == 1:
        return looking[0]
    if not looking:
        raise BadRequest(
            "no OpenAPI spec in the bundle: put openapi.yaml, openapi.yml or openapi.json at its root"
        )
    shown = ", ".join(looking[:10]) + (", ..." if len(looking) > 10 else "")
    raise BadRequest(
        f"cannot tell which file of the bundle is the OpenAPI spec ({shown}): "
        "name it openapi.yaml, openapi.yml or openapi.json at the root"
    )


def read_bundle(data: bytes) -> Bundle:
    """The ``Bundle`` in zip ``data``; ``BadRequest`` or ``PayloadTooLarge`` as the module says."""
    archive = open_zip(data)
    files: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if _ignored(info.filename):
            continue
        if info.filename in files:
            raise BadRequest(f"bundle entry '{info.filename}' appears twice", entry=info.filename)
        files[info.filename] = info
    files = _strip_common_folder(files)
    spec_name = _pick_spec(files)
    budget = _Budget()
    raw = budget.read(archive, files[spec_name])
    try:
        spec_text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the spec '{spec_name}' is not UTF-8 text: {e}", entry=spec_name)
    handlers: dict[str, bytes] = {}
    for name in sorted(files):
        if name.endswith(".rs"):
            handlers[name] = budget.read(archive, files[name])
    return Bundle(spec_name, spec_text, handlers)

"""Reading one Omniglot source, a zip or its extracted folder, without trusting it.

A source yields ``(class_name, where, png_bytes)`` per drawing, where ``where`` names
the file (``member in zip`` or the path), so that every error points at the file to
fix. Member paths are checked before use: ``..``, ``.``, empty or absolute parts are
refused, so a hostile zip cannot name a class ``../..``.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from .folder import describe

REDOWNLOAD = "delete it and download it again (download=True), or point FEWSHOT_DATA at a good copy"

# what reading a damaged member can raise: a bad CRC, a broken deflate stream, a
# truncated file, or a compression method zipfile does not implement
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError)


def open_zip(source: Path) -> zipfile.ZipFile:
    """Open ``source`` as a zip, or raise a ``ValueError`` that says what to do."""
    try:
        return zipfile.ZipFile(source)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{source} is not a readable zip ({e}); {REDOWNLOAD}.") from e


def check_member_path(source: Path, member: str) -> None:
    """Refuse a member whose path climbs out of the zip or is absolute."""
    parts = member.split("/")
    inner = parts[:-1] if member.endswith("/") else parts
    if member.startswith("/") or ":" in parts[0] or any(p in ("", ".", "..") for p in inner):
        raise ValueError(
            f"{source} holds the member {member!r}, whose path has a '..', '.', empty or "
            f"absolute part; Omniglot zips never do. Do not use this zip: {REDOWNLOAD}."
        )


def _drawing_members(source: Path, zf: zipfile.ZipFile, name: str) -> Iterator[zipfile.ZipInfo]:
    """The ``name/<Alphabet>/characterNN/<drawing>.png`` members, checked, in name order."""
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        check_member_path(source, info.filename)
        if info.is_dir() or not info.filename.endswith(".png"):
            continue
        parts = info.filename.split("/")
        if len(parts) != 4 or parts[0] != name:
            raise ValueError(
                f"{source} does not have the official Omniglot layout: found "
                f"{info.filename!r}, expected '{name}/<Alphabet>/characterNN/<drawing>.png'."
            )
        yield info


def _folder_drawings(source: Path) -> list[Path]:
    """``source/<Alphabet>/characterNN/*.png``, in name order (folders included, to refuse)."""
    return sorted(source.glob("*/*/*.png"))


def iter_pngs(source: Path, name: str) -> Iterator[tuple[str, str, bytes]]:
    """Yield ``(class_name, where, png_bytes)`` for each drawing of ``source``.

    Raises:
        ValueError: naming the file, for an unreadable zip or member, an unsafe member
            path, a foreign layout, a folder named like a drawing or an unreadable file.
    """
    if source.is_file():
        with open_zip(source) as zf:
            for info in _drawing_members(source, zf, name):
                where = f"{info.filename} in {source}"
                try:
                    data = zf.read(info)
                except _ZIP_READ_ERRORS as e:
                    raise ValueError(
                        f"cannot read {where} ({describe(e)}): the zip is damaged; {REDOWNLOAD}."
                    ) from e
                _, alphabet, character, _ = info.filename.split("/")
                yield f"{alphabet}/{character}", where, data
        return
    for png in _folder_drawings(source):
        if png.is_dir():
            raise ValueError(f"{png} is a folder, not a drawing; move or remove it.")
        try:
            data = png.read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read {png} ({e}); fix its permissions or remove it.") from e
        yield f"{png.parent.parent.name}/{png.parent.name}", str(png), data


def count_drawings(source: Path, name: str) -> int:
    """How many drawings ``source`` holds, without decoding (a zip's directory, a folder's listing)."""
    if source.is_file():
        with open_zip(source) as zf:
            return sum(1 for _ in _drawing_members(source, zf, name))
    return len(_folder_drawings(source))


def fingerprint(source: Path) -> str:
    """A digest that changes when the content behind ``source`` changes.

    For a zip: each member's name, size and CRC-32, read from the zip's central
    directory without decompressing anything, so a zip rewritten with other drawings
    but the same size and modification time is still noticed. For a folder: each
    drawing's path, size, modification and change time (hashing the contents would
    cost about as much as decoding them; the change time cannot be set back by
    copying tools, unlike the modification time).
    """
    h = hashlib.sha256(str(source.resolve()).encode())
    if source.is_file():
        with open_zip(source) as zf:
            rows = [f"{i.filename}|{i.file_size}|{i.CRC:08x}" for i in zf.infolist()]
    else:
        rows = []
        for p in sorted(source.rglob("*.png")):
            st = p.stat()
            rows.append(f"{p.relative_to(source)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}")
    for row in rows:
        h.update(b"\n" + row.encode())
    return h.hexdigest()

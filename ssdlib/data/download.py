"""Download and unpack VOC / COCO: resumable, checksummed, safely extracted.

- Data root: the ``root`` argument, else ``$SSDLIB_DATA``, else ``data/`` (:func:`data_root`).
- Resume: bytes arrive in ``<file>.part``; a later run asks the server for the rest with an
  HTTP ``Range`` header (a server that ignores it sends everything again: we start over).
- Checksums: md5 for the VOC archives (the devkit's published values). For COCO we know no
  official checksums, so only completeness is checked against the server's Content-Length.
- Extraction refuses, before writing anything, archives with a member path that is absolute,
  escapes the target folder (``../``), or is a link pointing outside it; tar extraction also
  runs with ``filter="data"`` as a second line of defence.
- Offline: a clear "cannot reach HOST" message saying which file to fetch by hand and where.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

__all__ = [
    "COCO_RESOURCES", "VOC_RESOURCES", "ChecksumError", "DownloadError", "Resource",
    "UnsafeArchiveError", "data_root", "download_file", "extract_archive", "fetch_and_extract",
    "get_coco", "get_voc", "md5sum",
]  # fmt: skip


class DownloadError(RuntimeError):
    """A download could not be completed; the message says what to do by hand."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the expected ones (the partial file is deleted)."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the target folder; nothing was extracted."""


@dataclass(frozen=True)
class Resource:
    url: str
    md5: str | None = None
    extract_to: str = "."  # relative to the data root

    @property
    def filename(self) -> str:
        return PurePosixPath(urllib.parse.urlparse(self.url).path).name


_VOC = "http://host.robots.ox.ac.uk/pascal/VOC"
VOC_RESOURCES: dict[str, Resource] = {
    "2007-trainval": Resource(f"{_VOC}/voc2007/VOCtrainval_06-Nov-2007.tar",
                              "c52e279531787c972589f7e41ab4ae64"),
    "2007-test": Resource(f"{_VOC}/voc2007/VOCtest_06-Nov-2007.tar",
                          "b6e924de25625d8de591ea690078ad9f"),
    "2012-trainval": Resource(f"{_VOC}/voc2012/VOCtrainval_11-May-2012.tar",
                              "6cd6e144f989b92b3379bac3b3de84fd"),
}  # fmt: skip  (the tars unpack to VOCdevkit/VOC{year}/: VOCDataset(root/"VOCdevkit"))
_COCO = "http://images.cocodataset.org"
COCO_RESOURCES: dict[str, Resource] = {
    "train2017": Resource(f"{_COCO}/zips/train2017.zip", None, "coco"),
    "val2017": Resource(f"{_COCO}/zips/val2017.zip", None, "coco"),
    "annotations": Resource(f"{_COCO}/annotations/annotations_trainval2017.zip", None, "coco"),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$SSDLIB_DATA``, else ``data/``."""
    return Path(root or os.environ.get("SSDLIB_DATA") or "data")


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "ssdlib"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def download_file(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    chunk: int = 1 << 20,
) -> Path:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part``), verify, and move into place.

    An existing ``dest`` is kept if it matches ``md5`` (or unconditionally without one).
    Raises :class:`DownloadError` (offline/HTTP) or :class:`ChecksumError`.
    """
    dest = Path(dest)
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    host = urllib.parse.urlparse(url).netloc
    try:
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not offset:  # 416: nothing left to send, the .part is whole
                raise
            response = None
        if response is not None:
            with response:
                if offset and response.status != 206:
                    offset = 0  # the server ignored Range: start over
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length is not None else None
                with open(part, "ab" if offset else "wb") as f, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True,
                    desc=dest.name, disable=not progress,
                ) as bar:  # fmt: skip
                    while block := response.read(chunk):
                        f.write(block)
                        bar.update(len(block))
                if total is not None and part.stat().st_size != total:
                    raise DownloadError(
                        f"{url}: connection closed after {part.stat().st_size} of {total} bytes;"
                        f" run again to resume from {part}"
                    )
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except http.client.HTTPException as e:  # e.g. IncompleteRead: the bytes so far are kept
        raise DownloadError(f"{url}: transfer interrupted ({e!r}); run again to resume") from e
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"cannot reach {host}: you seem to be offline ({reason}); "
            f"download {url} manually and save it as {dest}"
        ) from e
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink()
            raise ChecksumError(
                f"{dest.name}: md5 {got} does not match the expected {md5}; the partial file was"
                " deleted, run again to download it afresh"
            )
    os.replace(part, dest)
    return dest


def _inside(base: Path, target: Path) -> bool:
    return os.path.commonpath([base, target]) == str(base)


MAX_EXTRACT_BYTES = 64 << 30  # COCO train2017, the largest archive we unpack, is ~19 GB
_MAX_HOPS = 40  # link resolutions per path, as Linux's ELOOP limit


def _resolve(base: Path, start: Path, rel: str, links: dict[str, str]) -> Path:
    """Where ``start / rel`` lands once the archive's own symlinks (``links``: member path ->
    target) are followed, chains included (``x -> .``, ``x2 -> x/..``): ``..`` is taken after
    a link is followed, as the OS does, never lexically. May be outside ``base``."""
    cur, parts, hops = start, list(PurePosixPath(rel).parts), 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            cur = cur.parent
            continue
        nxt = cur / part
        key = os.path.relpath(nxt, base).replace(os.sep, "/") if _inside(base, nxt) else None
        if key in links:
            hops += 1
            if hops > _MAX_HOPS:
                raise UnsafeArchiveError(f"{rel!r}: link loop")
            target = links[key]
            if target.startswith(("/", "\\")):
                return Path(target)
            parts = list(PurePosixPath(target).parts) + parts  # relative to the link's folder
            continue
        cur = nxt
    return Path(os.path.normpath(cur))


def _check_member(base: Path, name: str, link: str | None, links: dict[str, str]) -> str | None:
    """Problem with one member (``None`` if safe). ``link``: symlink target, if a symlink;
    ``links``: every symlink of the archive, so that paths through links are followed."""
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or ":" in name[:2]:
        return f"{name!r}: absolute path"
    if not _inside(base, Path(os.path.normpath(base / name))):
        return f"{name!r}: escapes the target folder"
    pure = PurePosixPath(name)
    try:
        folder = _resolve(base, base, str(pure.parent), links)  # the OS follows folder links
    except UnsafeArchiveError as e:
        return str(e)
    if not _inside(base, folder / pure.name):
        return f"{name!r}: lands outside the target folder through a link"
    if link is not None:
        if link.startswith(("/", "\\")):
            return f"{name!r}: link to an absolute path {link!r}"
        try:
            target = _resolve(base, folder, link, links)
        except UnsafeArchiveError as e:
            return str(e)
        if not _inside(base, target):
            return f"{name!r}: link {link!r} points outside the target folder"
    return None


def _tar_problems(tf: tarfile.TarFile, base: Path) -> tuple[list[str], int]:
    problems, total = [], 0
    members = tf.getmembers()
    links = {_norm(m.name): m.linkname for m in members if m.issym()}
    for m in members:
        total += max(0, m.size) if m.isfile() else 0
        if m.isdev():
            problems.append(f"{m.name!r}: device file")
            continue
        link = m.linkname if m.issym() else None
        problem = _check_member(base, m.name, link, links)
        if problem is None and m.islnk():  # hard links name a path relative to the archive root
            problem = _check_member(base, m.linkname, None, links)
            problem = problem and f"{m.name!r}: hard link to {problem}"  # name the member too
        if problem:
            problems.append(problem)
    return problems, total


def _zip_problems(zf: zipfile.ZipFile, base: Path) -> tuple[list[str], int]:
    infos = zf.infolist()
    is_link = {i.filename: stat.S_ISLNK(i.external_attr >> 16) for i in infos}
    links = {_norm(i.filename): zf.read(i)[:4096].decode("utf-8", "replace")
             for i in infos if is_link[i.filename]}  # fmt: skip
    problems = []
    for info in infos:
        link = links[_norm(info.filename)] if is_link[info.filename] else None
        problem = _check_member(base, info.filename, link, links)
        if problem:
            problems.append(problem)
    return problems, sum(i.file_size for i in infos)


def _norm(name: str) -> str:
    return os.path.normpath(name.rstrip("/")).replace(os.sep, "/")


def _check_size(archive: Path, base: Path, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise UnsafeArchiveError(f"{archive}: refused to extract: it unpacks to {total} bytes, "
                                 f"over the {max_bytes}-byte limit")  # fmt: skip
    free = shutil.disk_usage(base).free
    if total > free:
        raise DownloadError(f"{archive}: unpacks to {total} bytes but {base} has only {free} "
                            "free; free space and run again (nothing was extracted)")  # fmt: skip


def extract_archive(
    archive: str | os.PathLike, dest: str | os.PathLike, max_bytes: int = MAX_EXTRACT_BYTES
) -> Path:
    """Unpack a ``.tar[.gz]``/``.zip`` into ``dest`` after checking every member path (links
    followed through the archive's own links) and the unpacked size (at most ``max_bytes``,
    and no more than the free space).

    Raises :class:`UnsafeArchiveError` listing all offending members, or naming the size;
    nothing is extracted then.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            problems, total = _zip_problems(zf, base)
            if not problems:
                _check_size(archive, base, total, max_bytes)
                zf.extractall(base)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            problems, total = _tar_problems(tf, base)
            if not problems:
                _check_size(archive, base, total, max_bytes)
                tf.extractall(base, filter="data")
    else:
        raise DownloadError(f"{archive}: neither a tar nor a zip archive")
    if problems:
        raise UnsafeArchiveError(
            f"{archive}: refused to extract, unsafe member(s):\n  " + "\n  ".join(problems)
        )
    return dest


def fetch_and_extract(
    resource: Resource, root: str | os.PathLike | None = None, progress: bool = True,
    keep_archive: bool = True,
) -> Path:  # fmt: skip
    """Download ``resource`` into ``root/archives`` and unpack it under ``root/extract_to``.

    A ``.<archive>.extracted`` marker makes a second call a no-op."""
    root = data_root(root)
    target = root / resource.extract_to
    marker = target / f".{resource.filename}.extracted"
    if marker.is_file():
        return target
    archive = download_file(resource.url, root / "archives" / resource.filename, resource.md5,
                            progress)  # fmt: skip
    extract_archive(archive, target)
    marker.touch()
    if not keep_archive:
        archive.unlink()
    return target


def get_voc(root=None, parts=tuple(VOC_RESOURCES), progress=True, keep_archive=True) -> Path:
    """VOC2007 trainval+test and VOC2012 trainval -> ``root/VOCdevkit/VOC{2007,2012}``."""
    for name in parts:
        fetch_and_extract(VOC_RESOURCES[name], root, progress, keep_archive)
    return data_root(root) / "VOCdevkit"


def get_coco(root=None, parts=tuple(COCO_RESOURCES), progress=True, keep_archive=True) -> Path:
    """COCO 2017 -> ``root/coco/{train2017,val2017,annotations}``."""
    for name in parts:
        fetch_and_extract(COCO_RESOURCES[name], root, progress, keep_archive)
    return data_root(root) / "coco"

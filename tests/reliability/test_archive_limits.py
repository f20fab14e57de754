"""Archive extraction (issue 20): links are followed through the archive's own links, chains
included, and the unpacked size is limited; every refusal is ours and comes before anything
is written (test_hostile_files.py covers single-member escapes)."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from ssdlib.data import download
from ssdlib.data.download import DownloadError, UnsafeArchiveError, extract_archive


def _tar(path: Path, members: list[tuple[str, str, str | int]], gz: bool = False) -> Path:
    """members: (kind, name, value); file: value = text or a size of zeros; symlink: target."""
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = b"\0" * value if isinstance(value, int) else value.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = str(value)
                tf.addfile(info)
    return path


def _zip(path: Path, members: list[tuple[str, str, str]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for kind, name, value in members:
            info = zipfile.ZipInfo(name)
            if kind == "symlink":
                info.external_attr = 0o120777 << 16
            zf.writestr(info, value)
    return path


CHAINS = [
    # x -> . is harmless alone; x2 -> x/.. is ".." once x is followed; x2/evil lands outside.
    [("symlink", "x", "."), ("symlink", "x2", "x/.."), ("file", "x2/evil", "pwned")],
    [("symlink", "a", "b"), ("symlink", "b", "a"), ("file", "a/f", "loop")],
    [("symlink", "d", "sub/../.."), ("file", "sub/ok", "x"), ("file", "d/evil", "x")],
    [("symlink", "x", "."), ("symlink", "y", "x/x/x/.."), ("file", "y/evil", "x")],
]


@pytest.mark.parametrize("members", CHAINS)
@pytest.mark.parametrize("make", [_tar, _zip])
def test_link_chains_are_refused_before_anything_is_extracted(tmp_path, make, members):
    archive = make(tmp_path / "a.arc", members)
    dest = tmp_path / "in" / "root"
    with pytest.raises(UnsafeArchiveError, match="refused to extract") as info:
        extract_archive(archive, dest)
    assert "outside the target folder" in str(info.value) or "link loop" in str(info.value)
    assert list(dest.iterdir()) == []  # not even the first, harmless link
    assert not (tmp_path / "in" / "evil").exists() and not (tmp_path / "evil").exists()


def test_links_that_stay_inside_still_extract(tmp_path):
    members = [("symlink", "x", "."), ("file", "d/ok.txt", "fine"), ("symlink", "d/up", ".."),
               ("symlink", "alias", "x/d/ok.txt")]  # fmt: skip
    root = extract_archive(_tar(tmp_path / "a.tar", members), tmp_path / "root")
    assert (root / "alias").read_text() == "fine"


@pytest.mark.parametrize("make", ["tar.gz", "zip"])
def test_the_unpacked_size_is_limited(tmp_path, make):
    # 4 MiB of zeros compress to a few KB: the limit is on what would be written.
    if make == "zip":
        archive = tmp_path / "bomb.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("zeros.bin", b"\0" * (4 << 20))
    else:
        archive = _tar(tmp_path / "bomb.tar.gz", [("file", "zeros.bin", 4 << 20)], gz=True)
    assert archive.stat().st_size < 64 << 10
    dest = tmp_path / "root"
    with pytest.raises(UnsafeArchiveError, match=r"unpacks to 4194304 bytes, over the 1048576"):
        extract_archive(archive, dest, max_bytes=1 << 20)
    assert list(dest.iterdir()) == []
    assert extract_archive(archive, dest, max_bytes=8 << 20) == dest  # within the limit: fine
    assert (dest / "zeros.bin").stat().st_size == 4 << 20


def test_an_archive_larger_than_the_free_space_is_refused(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "a.tar", [("file", "big.bin", 1 << 20)])
    real = shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1000))  # fmt: skip
    dest = tmp_path / "root"
    with pytest.raises(DownloadError, match="has only 1000 free; free space"):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == []


def test_a_gzip_that_is_not_an_archive_is_our_error(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(DownloadError, match="neither a tar nor a zip"):
        extract_archive(junk, tmp_path / "root")

"""Downloads and extraction, offline: a local HTTP server (with Range) and tiny archives."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ssdlib.data.download import (
    ChecksumError,
    DownloadError,
    Resource,
    UnsafeArchiveError,
    download_file,
    extract_archive,
    fetch_and_extract,
)

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[tuple[str, str | None]] = []
    ignore_range = False
    truncate_once: set[str] = set()

    def do_GET(self):  # noqa: N802 (http.server API)
        rng = self.headers.get("Range")
        type(self).log.append((self.path, rng))
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if rng and not self.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.truncate_once:  # die half-way, like a dropped connection
            self.truncate_once.discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files = {"/f.bin": PAYLOAD}
    _Handler.log = []
    _Handler.ignore_range = False
    _Handler.truncate_once = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_download_and_verify(server, tmp_path):
    url, handler = server
    dest = download_file(f"{url}/f.bin", tmp_path / "f.bin", MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    download_file(f"{url}/f.bin", dest, MD5, progress=False)  # present and valid: no request
    assert len(handler.log) == 1


def test_resume_partial_file_with_range(server, tmp_path):
    url, handler = server
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    dest = download_file(f"{url}/f.bin", tmp_path / "f.bin", MD5, progress=False)
    assert handler.log == [("/f.bin", "bytes=1000-")]
    assert dest.read_bytes() == PAYLOAD


def test_interrupted_transfer_then_resume(server, tmp_path):
    url, handler = server
    handler.truncate_once = {"/f.bin"}
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(f"{url}/f.bin", tmp_path / "f.bin", MD5, progress=False)
    kept = (tmp_path / "f.bin.part").stat().st_size
    assert 0 < kept < len(PAYLOAD)
    download_file(f"{url}/f.bin", tmp_path / "f.bin", MD5, progress=False)
    assert handler.log[-1] == ("/f.bin", f"bytes={kept}-")
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts(server, tmp_path):
    url, handler = server
    handler.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 10)
    dest = download_file(f"{url}/f.bin", tmp_path / "f.bin", MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_answered_416(server, tmp_path):
    url, handler = server
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    download_file(f"{url}/f.bin", tmp_path / "f.bin", MD5, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch(server, tmp_path):
    url, _ = server
    with pytest.raises(ChecksumError, match=r"f\.bin: md5 .* does not match the expected 0{32}"):
        download_file(f"{url}/f.bin", tmp_path / "f.bin", "0" * 32, progress=False)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_offline_and_http_errors(server, tmp_path):
    url, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{url}/missing.tar", tmp_path / "m.tar", progress=False)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "VOCtest.tar"
    with pytest.raises(DownloadError) as info:
        download_file(f"http://127.0.0.1:{port}/VOCtest.tar", dest, progress=False, timeout=5)
    msg = str(info.value)
    assert f"cannot reach 127.0.0.1:{port}: you seem to be offline" in msg and str(dest) in msg


def _tar(path, members):
    """members: (name, data|None, symlink target|None, hardlink target|None)"""
    with tarfile.open(path, "w") as tf:
        for name, data, sym, hard in members:
            info = tarfile.TarInfo(name)
            if sym is not None:
                info.type, info.linkname = tarfile.SYMTYPE, sym
                tf.addfile(info)
            elif hard is not None:
                info.type, info.linkname = tarfile.LNKTYPE, hard
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, sym in members:
            if sym is not None:
                info = zipfile.ZipInfo(name)
                info.external_attr = (0o120777 << 16)  # S_IFLNK
                zf.writestr(info, sym)
            else:
                zf.writestr(zipfile.ZipInfo(name), data)
    return path


def test_extract_good_archives(tmp_path):
    tar = _tar(tmp_path / "ok.tar", [("VOCdevkit/a.txt", b"A", None, None),
                                     ("VOCdevkit/link", None, "a.txt", None)])  # fmt: skip
    out = extract_archive(tar, tmp_path / "out")
    assert (out / "VOCdevkit/a.txt").read_bytes() == b"A"
    assert (out / "VOCdevkit/link").read_bytes() == b"A"
    z = _zip(tmp_path / "ok.zip", [("coco/x.json", b"{}", None)])
    assert (extract_archive(z, tmp_path / "out2") / "coco/x.json").read_bytes() == b"{}"


@pytest.mark.parametrize(
    ("kind", "members", "match"),
    [
        ("tar", [("ok.txt", b"1", None, None), ("../evil.txt", b"x", None, None)], "escapes"),
        ("tar", [("/abs_evil.txt", b"x", None, None)], "absolute path"),
        ("tar", [("sub/link", None, "../../evil_target", None)], "points outside"),
        ("tar", [("abslink", None, "/etc/passwd", None)], "link to an absolute path"),
        ("tar", [("hard", None, None, "../evil.txt")], "escapes"),
        ("zip", [("ok.txt", b"1", None), ("../evil.txt", b"x", None)], "escapes"),
        ("zip", [("/abs_evil.txt", b"x", None)], "absolute path"),
        ("zip", [("link", None, "../../evil_target")], "points outside"),
    ],
)
def test_unsafe_archives_refused_and_nothing_extracted(tmp_path, kind, members, match):
    archive = (_tar if kind == "tar" else _zip)(tmp_path / f"bad.{kind}", members)
    target = tmp_path / "a" / "b"
    with pytest.raises(UnsafeArchiveError, match=match) as info:
        extract_archive(archive, target)
    assert "bad." in str(info.value)
    assert list(target.iterdir()) == []  # refused before writing anything (ok.txt included)
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_fetch_and_extract_end_to_end(server, tmp_path):
    url, handler = server
    tar = _tar(tmp_path / "VOCmini.tar", [("VOCdevkit/VOC2007/x.txt", b"hello", None, None)])
    data = tar.read_bytes()
    handler.files["/voc/VOCmini.tar"] = data
    res = Resource(f"{url}/voc/VOCmini.tar", hashlib.md5(data).hexdigest())
    root = tmp_path / "root"
    fetch_and_extract(res, root, progress=False, keep_archive=False)
    assert (root / "VOCdevkit/VOC2007/x.txt").read_bytes() == b"hello"
    assert not (root / "archives/VOCmini.tar").exists()
    n = len(handler.log)
    fetch_and_extract(res, root, progress=False)  # marker: no second download
    assert len(handler.log) == n


def test_data_root_env(monkeypatch, tmp_path):
    from ssdlib.data.download import data_root

    monkeypatch.setenv("SSDLIB_DATA", str(tmp_path))
    assert data_root() == tmp_path and data_root("x") == __import__("pathlib").Path("x")
    monkeypatch.delenv("SSDLIB_DATA")
    assert str(data_root()) == "data"

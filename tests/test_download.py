"""Offline tests for tinykws.data.download against a local HTTP server."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import tarfile
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tinykws.data.download import (
    ARCHIVES,
    Archive,
    DownloadError,
    UnknownVersionError,
    UnsafeArchiveError,
    download_dataset,
)


# --------------------------------------------------------------------------
# fixtures: a tiny archive with the data set layout and a local server


def _wav_bytes(seed: int, n: int = 160) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes((seed * 7 + i) % 256 for i in range(2 * n)))
    return buf.getvalue()


def _make_tar(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


# Member names carry a "./" prefix, as in the published archives.
DATASET_FILES = {
    "./yes/0a7c2a8d_nohash_0.wav": _wav_bytes(1),
    "./yes/0b09edd3_nohash_1.wav": _wav_bytes(2),
    "./no/0a7c2a8d_nohash_0.wav": _wav_bytes(3),
    "./_background_noise_/white_noise.wav": _wav_bytes(4, n=4000),
    "./testing_list.txt": b"yes/0b09edd3_nohash_1.wav\n",
    "./validation_list.txt": b"no/0a7c2a8d_nohash_0.wav\n",
}
GOOD_TAR = _make_tar(DATASET_FILES)


def _archive(data: bytes, url: str, sha256: str | None = None) -> Archive:
    return Archive(
        url=url,
        filename="sc_test.tar.gz",
        size=len(data),
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        folder="sc_test",
    )


class _Server:
    """Serves ``files`` by path; ``honour_range`` and ``truncate`` change its behaviour."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.honour_range = True
        self.truncate = False
        self.range_headers: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                data = server.files.get(self.path)
                rng = self.headers.get("Range")
                server.range_headers.append(rng)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.honour_range:
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
                self.wfile.write(body[: len(body) // 2] if server.truncate else body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/speech_commands_v0.02.tar.gz"


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith(".") or p.suffix == ".part")


# --------------------------------------------------------------------------
# tests


def test_table_has_published_sizes_and_checksums():
    assert set(ARCHIVES) == {"v0.01", "v0.02", "test-v0.02"}
    for archive in ARCHIVES.values():
        assert archive.url.startswith("http://download.tensorflow.org/data/")
        assert archive.url.endswith("/" + archive.filename)
        assert archive.size and archive.size > 100_000_000
        assert len(archive.sha256) == 64


def test_download_and_extract(server, tmp_path):
    url = server.add("/sc.tar.gz", GOOD_TAR)
    out = download_dataset("v0.02", tmp_path, expected=_archive(GOOD_TAR, url), progress=True)

    assert out == tmp_path / "sc_test"
    assert (tmp_path / "sc_test.tar.gz").read_bytes() == GOOD_TAR
    for name, data in DATASET_FILES.items():
        assert (out / name).read_bytes() == data
    with wave.open(str(out / "yes" / "0a7c2a8d_nohash_0.wav")) as w:
        assert w.getframerate() == 16000
    assert _leftovers(tmp_path) == []
    assert server.range_headers == [None]


def test_url_override_keeps_expected_checksum(server, tmp_path):
    # A mirror URL is checked against the table entry, so a different file fails.
    url = server.add("/mirror.tar.gz", GOOD_TAR)
    with pytest.raises(DownloadError, match="size mismatch"):
        download_dataset("test-v0.02", tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_resume_from_partial_file(server, tmp_path):
    url = server.add("/sc.tar.gz", GOOD_TAR)
    half = len(GOOD_TAR) // 2
    (tmp_path / "sc_test.tar.gz.part").write_bytes(GOOD_TAR[:half])

    out = download_dataset("v0.02", tmp_path, expected=_archive(GOOD_TAR, url), progress=False)

    assert server.range_headers == [f"bytes={half}-"]
    assert (tmp_path / "sc_test.tar.gz").read_bytes() == GOOD_TAR
    assert (out / "testing_list.txt").exists()
    assert _leftovers(tmp_path) == []


def test_server_ignoring_range_restarts(server, tmp_path):
    server.honour_range = False
    url = server.add("/sc.tar.gz", GOOD_TAR)
    (tmp_path / "sc_test.tar.gz.part").write_bytes(b"\xff" * 100)  # not a prefix of the file

    download_dataset("v0.02", tmp_path, expected=_archive(GOOD_TAR, url), progress=False)

    assert server.range_headers == ["bytes=100-"]
    assert (tmp_path / "sc_test.tar.gz").read_bytes() == GOOD_TAR


def test_truncated_transfer_keeps_part_for_resume(server, tmp_path):
    server.truncate = True
    url = server.add("/sc.tar.gz", GOOD_TAR)
    expected = _archive(GOOD_TAR, url)
    with pytest.raises(DownloadError, match="stopped early"):
        download_dataset("v0.02", tmp_path, expected=expected, progress=False)
    part = tmp_path / "sc_test.tar.gz.part"
    assert 0 < part.stat().st_size < len(GOOD_TAR)

    server.truncate = False
    download_dataset("v0.02", tmp_path, expected=expected, progress=False)
    assert server.range_headers[-1] == f"bytes={len(GOOD_TAR) // 2}-"
    assert (tmp_path / "sc_test.tar.gz").read_bytes() == GOOD_TAR


def test_checksum_mismatch(server, tmp_path):
    url = server.add("/sc.tar.gz", GOOD_TAR)
    bad = "0" * 64
    with pytest.raises(DownloadError) as info:
        download_dataset("v0.02", tmp_path, expected=_archive(GOOD_TAR, url, sha256=bad), progress=False)
    message = str(info.value)
    assert bad in message and hashlib.sha256(GOOD_TAR).hexdigest() in message
    assert list(tmp_path.iterdir()) == []  # no archive, no .part, no folder


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "files, links",
    [
        ({"../evil": b"x"}, []),
        ({"./yes/../../evil": b"x"}, []),
        ({"ABSOLUTE": b"x"}, []),
        ({}, [_link("./yes/link", "../../evil", tarfile.SYMTYPE)]),
        ({}, [_link("./yes/link", "/etc/passwd", tarfile.SYMTYPE)]),
        ({}, [_link("./yes/hard", "../evil", tarfile.LNKTYPE)]),
        # "up" stays inside on its own, but "up/link" resolves through it to dest/evil
        ({}, [_link("./up", ".", tarfile.SYMTYPE), _link("./up/link", "../evil", tarfile.SYMTYPE)]),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out",
         "symlink-chain"],
)
def test_malicious_archive_rejected(server, tmp_path, files, links):
    dest = tmp_path / "dl"
    outside = tmp_path / "evil"
    files = {str(outside) if k == "ABSOLUTE" else k: v for k, v in files.items()}
    data = _make_tar({**DATASET_FILES, **files}, links)
    url = server.add("/evil.tar.gz", data)

    with pytest.raises(UnsafeArchiveError) as info:
        download_dataset("v0.02", dest, expected=_archive(data, url), progress=False)

    bad_name = next(iter(files), None) or links[0].name  # the first link member is refused
    assert f"archive member {bad_name!r}" in str(info.value)
    assert not outside.exists() and not (dest / "evil").exists()
    assert not (dest / "sc_test").exists()
    assert _leftovers(dest) == []  # the temporary extraction folder is gone


def test_offline_error_names_url(tmp_path):
    url = _closed_port_url()
    with pytest.raises(DownloadError) as info:
        download_dataset("v0.02", tmp_path, url=url, progress=False, timeout=5)
    assert url in str(info.value) and "--data" in str(info.value)
    assert not (tmp_path / "speech_commands_v0.02").exists()


def test_http_error_names_url(server, tmp_path):
    url = server.base + "/missing.tar.gz"
    with pytest.raises(DownloadError, match="404") as info:
        download_dataset("v0.02", tmp_path, url=url, progress=False)
    assert url in str(info.value)


def test_unknown_version(tmp_path):
    with pytest.raises(UnknownVersionError) as info:
        download_dataset("v9", tmp_path, progress=False)
    assert isinstance(info.value, ValueError)
    assert "'v9'" in str(info.value) and "v0.01, v0.02, test-v0.02" in str(info.value)


def test_existing_folder_is_not_overwritten(server, tmp_path):
    target = tmp_path / "speech_commands_v0.02"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    # The URL points at a closed port: returning early must not touch the network.
    out = download_dataset("v0.02", tmp_path, url=_closed_port_url(), progress=False)
    assert out == target and (target / "mine.txt").read_text() == "keep"

    url = server.add("/sc.tar.gz", GOOD_TAR)
    expected = dataclasses.replace(_archive(GOOD_TAR, url), folder="speech_commands_v0.02")
    # --force replaces only a folder tinykws extracted: the user's folder stays
    with pytest.raises(DownloadError, match="not extracted by tinykws"):
        download_dataset("v0.02", tmp_path, expected=expected, progress=False, force=True)
    assert (target / "mine.txt").read_text() == "keep"
    other = tmp_path / "fresh"
    out = download_dataset("v0.02", other, expected=expected, progress=False)
    (out / "stale.txt").write_text("left by an earlier extraction")
    out = download_dataset("v0.02", other, expected=expected, progress=False, force=True)
    assert not (out / "stale.txt").exists() and (out / "testing_list.txt").exists()


def test_verified_archive_is_reused(server, tmp_path):
    url = server.add("/sc.tar.gz", GOOD_TAR)
    expected = _archive(GOOD_TAR, url)
    (tmp_path / "sc_test.tar.gz").write_bytes(GOOD_TAR)
    out = download_dataset("v0.02", tmp_path, expected=expected, progress=False, keep_archive=False)
    assert server.range_headers == []
    assert (out / "no" / "0a7c2a8d_nohash_0.wav").exists()
    assert not (tmp_path / "sc_test.tar.gz").exists()

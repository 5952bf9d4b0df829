"""The download helper against a local HTTP server (127.0.0.1, no network): Range resume after a
dropped connection, 404 as a missing source, retries, a served LFS pointer named, local placing."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mmbalance.data import download
from mmbalance.data.download import MissingSource, fetch, place
from mmbalance.errors import DataError

BODY = bytes(range(256)) * 12_000  # 3 MB: several 1 MiB chunks
SHA = hashlib.sha256(BODY).hexdigest()
POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{SHA}\nsize {len(BODY)}\n".encode()


class Server:
    """Serves ``/file`` (with Range), ``/pointer`` (an LFS pointer) and ``/busy`` (HTTP 503); the first
    ``drop`` requests of ``/file`` send half the body and close the connection."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.drop = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path == "/busy":
                    self.send_error(503)
                elif self.path == "/pointer":
                    self.reply(200, POINTER)
                elif self.path == "/file":
                    start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
                    body = BODY[start:]
                    self.send_response(206 if start else 200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if server.drop:
                        server.drop -= 1
                        self.wfile.write(body[: len(body) // 2])
                        self.close_connection = True
                        return
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)  # no back-off waits in tests
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_dropped_connection_resumes_with_range(server: Server, tmp_path: Path) -> None:
    server.drop = 1
    dest = tmp_path / "clip.flv"
    assert fetch(f"{server.url}/file", dest, SHA, len(BODY), timeout=10) is True
    assert dest.read_bytes() == BODY and not (tmp_path / "clip.flv.part").exists()
    assert server.requests[0] == ("/file", None)
    assert server.requests[1][1] is not None and server.requests[1][1].startswith("bytes=")
    assert int(server.requests[1][1][6:-1]) > 0
    server.requests.clear()
    assert fetch(f"{server.url}/file", dest, SHA, len(BODY)) is False  # verified, not fetched again
    assert server.requests == []


def test_partial_file_from_an_earlier_run_is_continued(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "clip.wav"
    (tmp_path / "clip.wav.part").write_bytes(BODY[:1000])
    fetch(f"{server.url}/file", dest, SHA, len(BODY))
    assert server.requests == [("/file", "bytes=1000-")]
    assert dest.read_bytes() == BODY


def test_missing_failing_and_pointer_sources(server: Server, tmp_path: Path) -> None:
    with pytest.raises(MissingSource, match=r"not found \(HTTP 404\)"):
        fetch(f"{server.url}/gone", tmp_path / "a", SHA, len(BODY))
    with pytest.raises(DataError, match=r"a: download from .*/busy failed 3 times \(HTTP 503"):
        fetch(f"{server.url}/busy", tmp_path / "a", SHA, len(BODY), retries=2)
    with pytest.raises(DataError, match=r"b: downloaded file is wrong: a Git LFS pointer"):
        fetch(f"{server.url}/pointer", tmp_path / "b", SHA, len(BODY))
    assert not list(tmp_path.iterdir())
    with pytest.raises(MissingSource):
        fetch((tmp_path / "nothing").as_uri(), tmp_path / "c", SHA, len(BODY))


def test_place_links_copies_and_checks(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(BODY)
    assert place(source, tmp_path / "out" / "link", SHA, len(BODY), "symlink") is True
    assert (tmp_path / "out" / "link").resolve() == source.resolve()
    assert place(source, tmp_path / "out" / "link", SHA, len(BODY), "symlink") is False
    assert place(source, tmp_path / "out" / "copy", SHA, len(BODY), "copy") is True
    assert not (tmp_path / "out" / "copy").is_symlink()
    assert place(source, tmp_path / "out" / "copy", SHA, len(BODY), "copy") is False
    assert place(source, tmp_path / "out" / "hard", SHA, len(BODY), "hardlink") is True
    assert os.stat(tmp_path / "out" / "hard").st_ino == source.stat().st_ino
    source.write_bytes(BODY[:-1] + b"\0")
    with pytest.raises(DataError, match=r"src.bin: sha256 [0-9a-f]{64}, expected"):
        place(source, tmp_path / "out" / "again", SHA, len(BODY), "copy")
    with pytest.raises(MissingSource):
        place(tmp_path / "absent", tmp_path / "out" / "x", SHA, len(BODY), "symlink")


def test_place_unpinned_keeps_what_is_in_place_and_replaces_the_rest(tmp_path: Path) -> None:
    """A user's clip (no checksum): a re-run leaves links and same-size, not-older copies alone; a
    changed source or another link mode replaces ``dest``."""
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip one")
    dest = tmp_path / "out" / "clip.mp4"
    assert place(source, dest, mode="symlink") is True
    assert dest.is_symlink() and dest.resolve() == source.resolve()
    assert place(source, dest, mode="symlink") is False
    assert place(source, dest, mode="copy") is True  # a link is not a copy
    assert not dest.is_symlink() and dest.read_bytes() == b"clip one"
    assert dest.stat().st_mtime == source.stat().st_mtime  # timestamps copied
    assert place(source, dest, mode="copy") is False
    source.write_bytes(b"clip two, longer")  # replaced by the user: another size
    assert place(source, dest, mode="copy") is True and dest.read_bytes() == b"clip two, longer"
    os.utime(source, (source.stat().st_atime, dest.stat().st_mtime + 10))  # same size, newer
    assert place(source, dest, mode="copy") is True
    assert place(source, dest, mode="hardlink") is True  # a copy is not the same file
    assert os.path.samefile(source, dest) and not dest.is_symlink()
    assert place(source, dest, mode="hardlink") is False
    assert place(source, dest, mode="symlink") is True and dest.is_symlink()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["clip.mp4"]  # no temporary left


def test_place_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(BODY)
    with pytest.raises(MissingSource, match=r"absent\.mp4: not found"):
        place(tmp_path / "absent.mp4", tmp_path / "out" / "a.mp4", mode="copy")
    with pytest.raises(ValueError, match="sha256 and size"):
        place(source, tmp_path / "out" / "a.mp4", SHA)
    with pytest.raises(ValueError, match="'move' is not one of"):
        place(source, tmp_path / "out" / "a.mp4", mode="move")

    def cross_device(src: Path, dst: Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(download.os, "link", cross_device)
    with pytest.raises(DataError, match=r"a\.mp4: cannot hard-link .*clip\.mp4 .*use link: symlink or copy"):
        place(source, tmp_path / "out" / "a.mp4", mode="hardlink")
    assert not any((tmp_path / "out").iterdir())

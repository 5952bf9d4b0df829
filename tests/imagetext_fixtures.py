"""Fixture builders for the image-text datasets: tiny JPEGs, zip archives in the Google-Drive layout,
split files in the repositories' formats, and a local HTTP server that honours ``Range`` requests
(standing in for raw.githubusercontent.com; nothing leaves the machine)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A small noisy RGB JPEG (width, height), different for every seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip archive with the given member names and bytes (folders inside names, as Drive archives)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files of ``directory`` with ``Range: bytes=N-`` support (206), logging the ranges asked."""

    ranges: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
        if start >= len(data) and header:
            self.send_error(416)
            return
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server(directory: Path) -> Iterator[tuple[str, list[str | None]]]:
    """Serve ``directory`` on localhost; yield (base URL, the Range headers received)."""
    handler = type("Handler", (RangeHandler,), {"ranges": []})

    def make(*args: object, **kwargs: object) -> RangeHandler:
        return handler(*args, directory=str(directory), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler.ranges
    finally:
        server.shutdown()
        server.server_close()


def imagetext_params(root: Path, dataset: str, data: dict) -> dict:
    """The repository's params.yaml with ``dataset`` as the only dataset, its ``data`` block replaced by
    ``data`` and a seconds-long embedded preset (32-pixel images, 16 tokens, tiny encoders, 1 epoch)."""
    import json

    import yaml

    from mmbalance.config import apply_overrides, validate
    from tests.conftest import REPO

    repo_params = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {
        "experiment.datasets": [dataset],
        "experiment.seeds": [0],
        f"data.{dataset}": data,
        f"features.embedded.{dataset}": {
            "image": {"size": 32, "resize": "stretch"},
            "text": {"max_length": 16},
        },
        f"train.embedded.{dataset}.epochs": 1,
        f"train.embedded.{dataset}.batch_size": 8,  # one batch: BatchNorm needs more than one sample
        f"train.embedded.{dataset}.encoders": {
            "image": {"name": "resnet10", "width": 4},
            "text": {"name": "bert_tiny"},
        },
        "paths.data": str(root / "data"),
        "paths.results": str(root / "results"),
        "paths.tables": str(root / "paper_tables"),
        "paths.checkpoints": str(root / "checkpoints"),
    }
    params = apply_overrides(repo_params, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    validate(params)
    return params

"""Real storage servers for the bucket tests: moto's S3 server (in this process, on a free
port) and Azurite (Microsoft's Blob emulator, a node process). Never a mocked client: the
product's own fsspec/s3fs/adlfs code talks HTTP to them. Each request the S3 server answers is
one line of its log, counted here, so tests can hold the request budget of docs/storage.md."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import REPO, free_port
from tests.waits import wait_for

#: Azurite's well-known development account (public, in Microsoft's docs: not a secret)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_BIN = REPO / ".tools" / "node_modules" / ".bin" / "azurite-blob"
#: a key pair for the S3 server, distinctive so a test can search every file for the secret
S3_KEY_ID = "AKIAEPOCHSCOPETEST"
S3_SECRET = "epochscope-test-secret-8c4f1b"


@dataclass
class S3Server:
    port: int
    requests: list[str] = field(default_factory=list)
    server: object = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": S3_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip

    def new_bucket(self) -> str:
        """A fresh bucket (made with the product's own storage library); its name."""
        import fsspec

        name = f"b-{uuid.uuid4().hex[:12]}"
        fsspec.filesystem("s3", endpoint_url=self.endpoint, key=S3_KEY_ID,
                          secret=S3_SECRET).mkdir(name)  # fmt: skip
        return name

    def count(self, since: int, method: str | None = None) -> int:
        seen = self.requests[since:]
        return len([r for r in seen if method is None or f'"{method} ' in r])

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


class _Count(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage())  # werkzeug's colours
        if "HTTP/1.1" in message:
            self.into.append(message)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free port; its requests counted (werkzeug logs one line each)."""
    server = S3Server(free_port())
    handler = _Count(server.requests)
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(handler)
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False  # counted here, not printed into every test's output
    server.start()
    try:
        yield server
    finally:
        server.stop()
        werkzeug.removeHandler(handler)


@dataclass
class Azurite:
    port: int

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")  # fmt: skip

    def new_container(self) -> str:
        import fsspec

        name = f"c-{uuid.uuid4().hex[:12]}"
        fsspec.filesystem("az", connection_string=self.connection_string).mkdir(name)
        return name


@contextmanager
def azurite(folder: Path) -> Iterator[Azurite]:
    """Azurite's Blob service on a free port, storing into ``folder``."""
    binary = shutil.which("azurite-blob") or (str(AZURITE_BIN) if AZURITE_BIN.exists() else None)
    if binary is None:
        raise FileNotFoundError(f"azurite-blob: not at {AZURITE_BIN}; `make test` installs it "
                                "(npm install --prefix .tools azurite@3.37.0)")  # fmt: skip
    port = free_port()
    log = (folder / "azurite.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
         str(folder), "--silent", "--skipApiVersionCheck", "--loose"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        import socket

        def answers() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(answers, 30, f"Azurite to listen on {port}", proc=proc)
        yield Azurite(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def without_env(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}

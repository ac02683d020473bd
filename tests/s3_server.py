"""A real S3-compatible server for tests and benches: moto's server mode (`moto_server`), a separate
process speaking the S3 HTTP API on a free loopback port, with one bucket. boto3 in this process
reaches it through the AWS variables set while it runs; `env` gives them to child processes."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.e2e.private_servers import _wait_port, free_port

BUCKET = "cube-test"


class S3Server:
    def __init__(self, port: int):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1"}

    def new_url(self) -> str:
        """A fresh s3:// URL (its own prefix in the bucket): one test's storage, apart from the others'."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"

    def keys(self, url: str) -> list[str]:
        return object_keys(url)


def object_keys(url: str) -> list[str]:
    """Every object key under the storage at `url` (s3://bucket/prefix), relative to its prefix."""
    import boto3

    bucket, prefix = url.split("/", 3)[2], url.split("/", 3)[3] + "/"
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))


@contextmanager
def running_s3_server(workdir: Path) -> Iterator[S3Server]:
    server = S3Server(free_port())
    moto = Path(sys.executable).with_name("moto_server")
    log = open(workdir / "moto.log", "wb")
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(server.port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    saved = {k: os.environ.get(k) for k in server.env}
    try:
        _wait_port(server.port, True, 30, "moto_server")
        os.environ.update(server.env)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.kill()
        proc.wait(10)
        log.close()

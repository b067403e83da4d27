"""A real S3 endpoint for the tests: ``moto_server`` on loopback, with IAM authentication on.

Loaded as a pytest plugin from ``tests/conftest.py``. One server per test session,
stopped at the end. After the first three requests (which create an IAM user,
its policy and its access key) the server refuses any request not signed with
that user's key, so a test passes only if the credentials really reached the
process that talked to the store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
BUCKET = "icechunk-prefect-tests"
_POLICY = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
)


@dataclass(frozen=True)
class S3Server:
    """A running moto server and the one key pair it accepts."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str = BUCKET
    region: str = REGION

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def storage(self, prefix: str) -> Any:
        """Icechunk storage with static keys, for the test process only (never shipped)."""
        import icechunk

        return icechunk.s3_storage(
            bucket=self.bucket,
            prefix=prefix,
            region=self.region,
            endpoint_url=self.endpoint_url,
            allow_http=True,
            force_path_style=True,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )

    def block_fields(self, prefix: str) -> dict[str, Any]:
        """IcechunkRepository fields for ``prefix`` (without credentials)."""
        return {
            "storage_type": "s3",
            "bucket": self.bucket,
            "prefix": prefix,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "allow_http": True,
            "force_path_style": True,
        }

    def save_block(self, prefix: str, stem: str) -> str:
        """Save an IcechunkRepository block for ``prefix`` holding this server's keys (a
        name from ``stem`` and a random suffix); return its name."""
        import uuid

        from pydantic import SecretStr

        from icechunk_prefect.storage.block import IcechunkRepository

        name = f"{stem}-{uuid.uuid4().hex[:8]}"
        IcechunkRepository(
            **self.block_fields(prefix),
            access_key_id=SecretStr(self.access_key_id),
            secret_access_key=SecretStr(self.secret_access_key),
        ).save(name)
        return name

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix`` (key -> bytes)."""
        client = self.client()
        out: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                out[item["Key"]] = client.get_object(Bucket=self.bucket, Key=item["Key"])[
                    "Body"
                ].read()
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not open its port")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto_server on a free loopback port, IAM auth on, one bucket, one key pair."""
    import boto3

    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=log
    )
    try:
        _wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}"
        admin = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
        iam = boto3.client("iam", endpoint_url=url, region_name=REGION, **admin)
        iam.create_user(UserName="icechunk-writer")
        iam.put_user_policy(UserName="icechunk-writer", PolicyName="all", PolicyDocument=_POLICY)
        key = iam.create_access_key(UserName="icechunk-writer")["AccessKey"]
        server = S3Server(url, key["AccessKeyId"], key["SecretAccessKey"])
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_prefix(request: pytest.FixtureRequest) -> str:
    """A fresh prefix in the test bucket for one test."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"

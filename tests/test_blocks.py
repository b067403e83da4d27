"""Issue 4: the IcechunkRepository block (save, load, register, standard suite, flows, pickling)."""

from __future__ import annotations

import email.message
import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
import urllib.request
import urllib.response
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import cloudpickle
import icechunk
import numpy as np
import pytest
from prefect.blocks.system import Secret
from prefect.testing.standard_test_suites.blocks import BlockStandardTestSuite
from pydantic import SecretStr

import icechunk_prefect
from icechunk_prefect import IcechunkRepository, RepositorySource, to_icechunk
from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.storage.credentials import S3CredentialsFetcher, SecretRef
from icechunk_prefect.storage.resolve import resolve_repository
from tests.helpers import history, read_back, small_dataset


def _name(prefix: str = "repo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# The block's logo, as stored in the icechunk repository at the commit its URL pins: git blob
# id of the file (this machine has no network, so the suite's logo check reads this copy).
LOGO_COPY = Path(__file__).parent / "data" / "icechunk-logo-96.png"
LOGO_BLOB = "fee83510f9d03123d5dd1531d853b5869ff2f4f9"


class _PinnedLogoHandler(urllib.request.BaseHandler):
    """Answers ``urlopen`` of the block's (commit-pinned, immutable) logo URL from LOGO_COPY;
    every other https URL goes to the real network."""

    handler_order = 100  # before urllib's HTTPSHandler

    def https_open(self, req: urllib.request.Request) -> Any:
        if req.full_url != str(IcechunkRepository._logo_url):
            return None
        body = LOGO_COPY.read_bytes()
        headers = email.message.Message()
        headers["Content-Type"] = "image/png"
        headers["Content-Length"] = str(len(body))
        response = urllib.response.addinfourl(io.BytesIO(body), headers, req.full_url, 200)
        response.msg = "OK"  # type: ignore[attr-defined]
        return response


class TestStandardSuite(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[IcechunkRepository]:
        return IcechunkRepository

    @pytest.fixture(autouse=True)
    def _logo_offline(self) -> Iterator[None]:
        body = LOGO_COPY.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
        assert blob == LOGO_BLOB, "tests/data/icechunk-logo-96.png is not the pinned logo"
        urllib.request.install_opener(urllib.request.build_opener(_PinnedLogoHandler()))
        try:
            yield
        finally:
            urllib.request.install_opener(None)  # type: ignore[arg-type]


def test_logo_url_is_the_pinned_icechunk_logo():
    url = str(IcechunkRepository._logo_url)
    assert url.startswith("https://raw.githubusercontent.com/earth-mover/icechunk/")
    assert re.search(r"/[0-9a-f]{40}/", url), "pin the logo to a commit, not a branch"
    assert url.endswith("/favicon-96x96.png")


def test_block_is_a_repository_source_and_exported():
    block = IcechunkRepository(path="/tmp/x")
    assert isinstance(block, RepositorySource)
    assert icechunk_prefect.IcechunkRepository is IcechunkRepository
    assert "IcechunkRepository" in icechunk_prefect.__all__
    assert IcechunkRepository.get_block_type_slug() == "icechunk-repository"


def test_prefect_block_register_cli(prefect_api):
    exe = Path(sys.executable).parent / "prefect"
    out = subprocess.run(
        [str(exe), "block", "register", "-m", "icechunk_prefect"],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Icechunk Repository" in out.stdout


def test_local_block_saved_loaded_and_used_by_flows(runner, tmp_path):
    path = str(tmp_path / "repo")
    name = _name()
    IcechunkRepository(path=path, inline_chunk_threshold_bytes=0).save(name)
    loaded = cast(IcechunkRepository, IcechunkRepository.load(name))
    assert loaded.path == path
    assert loaded.describe() == f"file://{path}"
    assert loaded.local_lock_path() == f"{path}/.icechunk-prefect.commit.lock"

    run = to_icechunk.with_options(task_runner=runner)
    first = small_dataset(periods=20)
    run(first, loaded, mode="w", partition_size=10)  # the block object
    more = small_dataset(periods=20, start="2024-01-21", seed=1)
    run(more, f"icechunk-repository/{name}", append_dim="time", partition_size=10)  # by name
    back = read_back(path)
    assert back.sizes["time"] == 40
    assert back.a.values.tolist() == small_dataset(periods=40).a.values.tolist()[:20] + (
        more.a.values.tolist()
    )
    assert len(history(path)) == 3
    # The block's write option reached the repository: no chunk was inlined.
    repo = loaded.open_repository()
    assert repo.config.inline_chunk_threshold_bytes == 0
    resolved = resolve_repository("icechunk-repository/" + name)
    assert isinstance(resolved, IcechunkRepository)
    assert resolved._block_document_name == name


def test_reference_to_missing_block_says_so():
    with pytest.raises(ConfigurationError, match="No saved IcechunkRepository block named"):
        resolve_repository("icechunk-repository/" + _name("missing"))


def test_local_block_errors_say_what_to_do(tmp_path):
    with pytest.raises(ConfigurationError, match="needs a path"):
        IcechunkRepository().open_repository()
    with pytest.raises(ConfigurationError, match="the path does not exist"):
        IcechunkRepository(path=str(tmp_path / "nothing")).open_repository()
    with pytest.raises(ConfigurationError, match="needs a bucket"):
        IcechunkRepository(storage_type="s3").storage()
    with pytest.raises(ConfigurationError, match="several credential modes"):
        IcechunkRepository(
            storage_type="s3", bucket="b", from_env=True, access_key_id_secret="k"
        ).storage()
    with pytest.raises(ConfigurationError, match="from_env=True"):
        IcechunkRepository(storage_type="azure", account="acc", bucket="c").storage()
    repo = IcechunkRepository(path=str(tmp_path / "new")).open_repository(create=True)
    assert isinstance(repo, icechunk.Repository)


def test_unsaved_block_with_secrets_refuses_to_travel():
    block = IcechunkRepository(
        storage_type="s3",
        bucket="bucket",
        prefix="p",
        region="us-east-1",
        access_key_id=SecretStr("AKIAUNSAVED"),
        secret_access_key=SecretStr("unsaved-secret-value"),
    )
    with pytest.raises(ConfigurationError, match="not saved"):
        cloudpickle.dumps(block)
    with pytest.raises(ConfigurationError, match=r"Save it first"):
        block.storage()
    assert "unsaved-secret-value" not in repr(block)


def test_saved_block_pickles_without_secret_values(s3_server, s3_prefix):
    name = _name("s3")
    block = IcechunkRepository(
        **s3_server.block_fields(s3_prefix),
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    block.save(name)
    blob = cloudpickle.dumps(block)
    assert s3_server.secret_access_key.encode() not in blob
    assert s3_server.access_key_id.encode() not in blob
    assert name.encode() in blob  # what travels is the name

    shipped = pickle.loads(blob)
    assert shipped.secret_access_key is None
    # The unpickled block reads the keys back from the Prefect API and can write.
    repo = shipped.open_repository(create=True)
    session = repo.writable_session("main")
    import zarr

    zarr.create_array(session.store, name="a", shape=(4,), chunks=(2,), dtype="i4")[:] = 7
    fork_blob = pickle.dumps(session.fork())
    assert s3_server.secret_access_key.encode() not in fork_blob
    session.commit("via unpickled block")
    check = icechunk.Repository.open(s3_server.storage(s3_prefix))
    back = zarr.open_array(check.readonly_session("main").store, path="a")
    assert np.asarray(back[:]).tolist() == [7] * 4
    # A repository opened from the original (secret-holding) block carries no value either.
    assert s3_server.secret_access_key.encode() not in pickle.dumps(block.open_repository())


def test_secret_block_references(s3_server, s3_prefix):
    key_name, secret_name = _name("key"), _name("secret")
    Secret(value=s3_server.access_key_id).save(key_name)
    Secret(value=s3_server.secret_access_key).save(secret_name)
    block = IcechunkRepository(
        **s3_server.block_fields(s3_prefix),
        access_key_id_secret=key_name,
        secret_access_key_secret=secret_name,
    )
    repo = block.open_repository(create=True)  # unsaved block: it holds names only
    assert s3_server.secret_access_key.encode() not in pickle.dumps(repo)
    assert list(repo.list_branches()) == ["main"]
    assert s3_server.secret_access_key.encode() not in cloudpickle.dumps(block)

    wrong = S3CredentialsFetcher(SecretRef(f"secret/{key_name}"), SecretRef("secret/" + _name()))
    with pytest.raises(ConfigurationError, match="Could not load the Prefect block"):
        wrong()

"""The ``IcechunkRepository`` Prefect Block: where a repository lives and how to reach it.

Save one per repository (UI form or code), load it by name in any flow, or pass
``"icechunk-repository/<name>"`` wherever a repository is expected. The block is
a :class:`~icechunk_prefect.storage.local.RepositorySource`: the flows hand it to
their tasks, which open the repository on the Dask worker.

Secrets never travel. The storage the block builds holds no credential values:

- ``from_env`` / ``anonymous``: the worker's environment (or nothing) is used;
- secrets typed into the block (``secret_access_key``...) are read back by the
  worker from the Prefect API, by the block's saved name;
- ``*_secret`` fields name Prefect ``Secret`` blocks, also read on the worker.

Pickling the block (Dask ships task parameters that way) drops its secret
values; an unsaved block holding secrets refuses to be pickled or opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import icechunk
from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, PrivateAttr, SecretStr

from icechunk_prefect.errors import ConfigurationError
from icechunk_prefect.storage.credentials import GcsTokenFetcher, S3CredentialsFetcher, SecretRef
from icechunk_prefect.storage.local import LocalRepository

__all__ = ["IcechunkRepository", "StorageKind"]

StorageKind = Literal["local", "s3", "gcs", "azure"]

# Secret fields typed into the block, and the field naming a Secret block instead.
_SECRET_FIELDS: dict[str, str] = {
    "access_key_id": "access_key_id_secret",
    "secret_access_key": "secret_access_key_secret",
    "session_token": "session_token_secret",
    "bearer_token": "bearer_token_secret",
}


class IcechunkRepository(Block):
    """An Icechunk repository on a local disk, S3 (or S3-compatible), Google Cloud Storage
    or Azure Blob Storage, with its credentials and write options.

    Every flow of icechunk-prefect accepts it as ``repo``. Credentials are resolved
    on the Dask workers (from the environment, or from this block / Prefect Secret
    blocks through the Prefect API): no secret value is pickled into task
    parameters or results.

    Example:
        Save a repository once (here a local one; or from the UI), then load it by
        name and open it:
        ```python
        from icechunk_prefect import IcechunkRepository

        IcechunkRepository(path="/tmp/doc-block-repo").save("BLOCK_NAME", overwrite=True)

        icechunk_repository = IcechunkRepository.load("BLOCK_NAME")
        repo = icechunk_repository.open_repository(create=True)
        ```
    """

    _block_type_name: ClassVar[str | None] = "Icechunk Repository"
    _block_type_slug: ClassVar[str | None] = "icechunk-repository"
    _documentation_url: ClassVar[HttpUrl | None] = HttpUrl("https://icechunk.io/en/latest/storage/")
    # The Icechunk logo (the icechunk.io docs' favicon, 96 x 96), pinned to a commit so the
    # file behind the URL never changes.
    _logo_url: ClassVar[HttpUrl | None] = HttpUrl(
        "https://raw.githubusercontent.com/earth-mover/icechunk/"
        "d09b1fd46141410def4566fdc5ba00f5a61139f4/icechunk-python/docs/docs/assets/favicon/"
        "favicon-96x96.png"
    )
    _description: ClassVar[str | None] = (
        "Where an Icechunk repository lives (local path, S3 or S3-compatible, GCS, Azure), "
        "its credentials and write options. Credentials are resolved on the workers."
    )

    storage_type: StorageKind = Field(
        default="local", description="Kind of storage: local, s3, gcs or azure."
    )
    path: str | None = Field(
        default=None, description="Local storage: folder of the repository on the workers' disk."
    )
    bucket: str | None = Field(
        default=None, description="Object storage: the bucket (S3, GCS) or container (Azure)."
    )
    prefix: str | None = Field(
        default=None, description="Object storage: the repository's prefix inside the bucket."
    )
    region: str | None = Field(
        default=None, description="S3: the region, e.g. us-east-1 (avoids a region probe)."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible stores: the endpoint, e.g. https://minio.example.org:9000.",
    )
    force_path_style: bool = Field(
        default=False, description="S3-compatible stores: path-style addressing (MinIO, Ceph)."
    )
    allow_http: bool = Field(
        default=False, description="Allow plain HTTP to the endpoint (test servers only)."
    )
    account: str | None = Field(default=None, description="Azure: the storage account name.")
    anonymous: bool = Field(
        default=False, description="Unsigned requests (public, read-only buckets)."
    )
    from_env: bool = Field(
        default=False,
        description=(
            "Read credentials from the environment of the process that opens the repository "
            "(AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*): set them on the workers."
        ),
    )
    access_key_id: SecretStr | None = Field(
        default=None, description="S3: access key id (read by the workers from this saved block)."
    )
    secret_access_key: SecretStr | None = Field(
        default=None, description="S3: secret access key (read by the workers from this block)."
    )
    session_token: SecretStr | None = Field(
        default=None, description="S3: session token, for temporary credentials."
    )
    access_key_id_secret: str | None = Field(
        default=None, description="S3: name of a Prefect Secret block holding the access key id."
    )
    secret_access_key_secret: str | None = Field(
        default=None,
        description="S3: name of a Prefect Secret block holding the secret access key.",
    )
    session_token_secret: str | None = Field(
        default=None, description="S3: name of a Prefect Secret block holding a session token."
    )
    service_account_file: str | None = Field(
        default=None, description="GCS: path of a service account JSON file on the workers."
    )
    bearer_token: SecretStr | None = Field(
        default=None, description="GCS: an OAuth bearer token (read by the workers from the API)."
    )
    bearer_token_secret: str | None = Field(
        default=None, description="GCS: name of a Prefect Secret block holding a bearer token."
    )
    inline_chunk_threshold_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Chunks smaller than this are stored in the manifest (Icechunk default 512).",
    )
    max_concurrent_requests: int | None = Field(
        default=None, ge=1, description="Most concurrent requests to the store per process."
    )
    max_concurrent_requests_for_object: int | None = Field(
        default=None, ge=1, description="Most concurrent requests for one object (split reads)."
    )
    ideal_concurrent_request_size: int | None = Field(
        default=None, ge=1, description="Preferred size in bytes of one ranged request."
    )
    storage_max_tries: int | None = Field(
        default=None, ge=1, description="Tries of a failed storage request before giving up."
    )

    # Names of secret fields whose values were dropped when this block was pickled:
    # the process that unpickled it reads them back from the Prefect API.
    _stripped_secrets: tuple[str, ...] = PrivateAttr(default=())

    # ------------------------------------------------------------ RepositorySource

    def open_repository(self, *, create: bool = False) -> icechunk.Repository:
        """Open the repository (with ``create=True``, create it if missing)."""
        storage = self.storage()
        config = self.repository_config()
        if icechunk.Repository.exists(storage):
            return icechunk.Repository.open(storage, config=config)
        if self.storage_type == "local":
            # raises, saying what the folder holds; completes an interrupted create
            return self._local().open_repository(create=create, config=config)
        if create:
            return icechunk.Repository.create(storage, config=config)
        raise ConfigurationError(
            f"No Icechunk repository at {self.describe()}. Create it first "
            "(pass mode='w', or open_repository(create=True))."
        )

    def describe(self) -> str:
        """Where the repository lives, without any secret."""
        if self.storage_type == "local":
            return self._local().describe()
        where = {"s3": "s3", "gcs": "gs", "azure": "az"}[self.storage_type]
        account = f"{self.account}/" if self.storage_type == "azure" and self.account else ""
        text = f"{where}://{account}{self.bucket}/{(self.prefix or '').strip('/')}"
        if self.endpoint_url:
            text += f" (endpoint {self.endpoint_url})"
        return text

    def local_lock_path(self) -> str | None:
        """Local storage has no conditional writes: commits lock a file. Object stores: None."""
        return self._local().local_lock_path() if self.storage_type == "local" else None

    # ------------------------------------------------------------ storage

    def storage(self) -> icechunk.Storage:
        """The Icechunk storage, holding no credential value (see the module docs)."""
        kind = self.storage_type
        if kind == "local":
            return self._local()._storage()
        if not self.bucket:
            raise ConfigurationError(
                f"storage_type {kind!r} needs a bucket (seen bucket={self.bucket!r}); set it on "
                "the block."
            )
        if kind == "s3":
            return self._s3_storage()
        if kind == "gcs":
            return self._gcs_storage()
        if kind == "azure":
            return self._azure_storage()
        raise ConfigurationError(f"Unknown storage_type {kind!r}; use local, s3, gcs or azure.")

    def repository_config(self) -> icechunk.RepositoryConfig | None:
        """The repository options set on the block (``None`` if none)."""
        concurrency = None
        if self.max_concurrent_requests_for_object or self.ideal_concurrent_request_size:
            concurrency = icechunk.StorageConcurrencySettings(
                max_concurrent_requests_for_object=self.max_concurrent_requests_for_object,
                ideal_concurrent_request_size=self.ideal_concurrent_request_size,
            )
        retries = (
            icechunk.StorageRetriesSettings(max_tries=self.storage_max_tries)
            if self.storage_max_tries
            else None
        )
        settings = (
            icechunk.StorageSettings(concurrency=concurrency, retries=retries)
            if concurrency or retries
            else None
        )
        if (
            settings is None
            and self.inline_chunk_threshold_bytes is None
            and self.max_concurrent_requests is None
        ):
            return None
        return icechunk.RepositoryConfig(
            inline_chunk_threshold_bytes=self.inline_chunk_threshold_bytes,
            max_concurrent_requests=self.max_concurrent_requests,
            storage=settings,
        )

    def _local(self) -> LocalRepository:
        if not self.path:
            raise ConfigurationError(
                "storage_type 'local' needs a path (seen path=None); set the block's path."
            )
        return LocalRepository(str(Path(self.path).expanduser()))

    def _slug(self) -> str | None:
        name = self._block_document_name
        if name and not self._is_anonymous:
            return f"{self.get_block_type_slug()}/{name}"
        return None

    def _ref(self, name: str) -> SecretRef | None:
        """Where the worker reads secret ``name`` from (``None``: not configured)."""
        inline = getattr(self, name) is not None or name in self._stripped_secrets
        secret_block = getattr(self, _SECRET_FIELDS[name])
        if inline and secret_block:
            raise ConfigurationError(
                f"Both {name} and {_SECRET_FIELDS[name]} are set on the block; keep one."
            )
        if secret_block:
            return SecretRef(secret_block if "/" in secret_block else f"secret/{secret_block}")
        if not inline:
            return None
        slug = self._slug()
        if slug is None:
            raise ConfigurationError(
                f"The block holds a secret ({name}) but is not saved, so the workers cannot read "
                "it from the Prefect API and it would have to travel in every pickled task "
                "result. Save it first (block.save('my-repo')), or use from_env=True or "
                f"{_SECRET_FIELDS[name]} (a Prefect Secret block name)."
            )
        return SecretRef(slug, name)

    def _check_auth_modes(self, refs: list[SecretRef | None]) -> None:
        modes = [m for m, on in (("anonymous", self.anonymous), ("from_env", self.from_env)) if on]
        if any(refs):
            modes.append("secrets")
        if len(modes) > 1:
            raise ConfigurationError(
                f"The block sets several credential modes {modes}; choose one of anonymous, "
                "from_env, or secrets."
            )

    def _s3_storage(self) -> icechunk.Storage:
        key, secret, token = (self._ref(n) for n in _SECRET_FIELDS if n != "bearer_token")
        self._check_auth_modes([key, secret, token])
        creds: dict[str, Any] = {}
        if self.anonymous:
            creds["anonymous"] = True
        elif self.from_env:
            creds["from_env"] = True
        elif key or secret:
            if not (key and secret):
                raise ConfigurationError(
                    "S3 needs both an access key id and a secret access key (seen only "
                    f"{'access_key_id' if key else 'secret_access_key'}); set both on the block."
                )
            creds["get_credentials"] = S3CredentialsFetcher(key, secret, token)
        return icechunk.s3_storage(
            bucket=self.bucket or "",
            prefix=self.prefix,
            region=self.region,
            endpoint_url=self.endpoint_url,
            allow_http=self.allow_http,
            force_path_style=self.force_path_style,
            **creds,
        )

    def _gcs_storage(self) -> icechunk.Storage:
        token = self._ref("bearer_token")
        self._check_auth_modes([token])
        creds: dict[str, Any] = {}
        if self.anonymous:
            creds["anonymous"] = True
        elif self.from_env:
            creds["from_env"] = True
        elif token:
            creds["get_credentials"] = GcsTokenFetcher(token)
        elif self.service_account_file:
            creds["service_account_file"] = self.service_account_file
        return icechunk.gcs_storage(bucket=self.bucket or "", prefix=self.prefix, **creds)

    def _azure_storage(self) -> icechunk.Storage:
        if not self.account:
            raise ConfigurationError("storage_type 'azure' needs the storage account name.")
        if not (self.anonymous or self.from_env):
            raise ConfigurationError(
                "Azure storage keys cannot be resolved on the workers by Icechunk (it would "
                "pickle them into every fork): set from_env=True and give the workers "
                "AZURE_STORAGE_ACCOUNT_KEY / AZURE_STORAGE_SAS_KEY or a managed identity."
            )
        return icechunk.azure_storage(
            account=self.account,
            container=self.bucket or "",
            prefix=self.prefix or "",
            from_env=self.from_env or None,
            anonymous=self.anonymous or None,
        )

    # ------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle without secret values: the unpickled block reads them from the API by name."""
        state = super().__getstate__()
        present = tuple(n for n in _SECRET_FIELDS if getattr(self, n) is not None)
        if not present:
            return state
        if self._slug() is None:
            raise ConfigurationError(
                f"This IcechunkRepository block holds secrets {list(present)} and is not saved: "
                "pickling it (e.g. to send it to a Dask worker) would carry them in plain text. "
                "Save it first (block.save('my-repo')), or use from_env=True or Secret block "
                "names."
            )
        values = dict(state["__dict__"])
        for name in present:
            values[name] = None
        private = dict(state.get("__pydantic_private__") or {})
        private["_stripped_secrets"] = tuple(
            sorted({*private.get("_stripped_secrets", ()), *present})
        )
        return {**state, "__dict__": values, "__pydantic_private__": private}

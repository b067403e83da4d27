"""Storage credentials resolved where they are used, never carried in a pickle.

Icechunk pickles static credentials in plain text inside every ``Repository``,
``Storage`` and ``ForkSession``. Forks travel between the flow process and the
Dask workers as task results (and are persisted when results are), so a fork
must not hold a secret. Icechunk accepts instead a *credentials callable*
(``get_credentials=``) that is pickled in place of the values and called in the
process that talks to the object store.

The callables here carry only *references*: the slug of a saved Prefect block
and a field name (``icechunk-repository/prod#secret_access_key``), or the slug of
a Prefect ``Secret`` block (``secret/aws-secret-key``), and the URL of the
Prefect API to read them from. They load the values from the Prefect API when
Icechunk asks for credentials, on the worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import icechunk

from icechunk_prefect.errors import ConfigurationError

__all__ = [
    "GcsTokenFetcher",
    "S3CredentialsFetcher",
    "SecretRef",
    "current_api_url",
]


def current_api_url() -> str | None:
    """The Prefect API URL of the current settings context (``None`` if unset)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


@contextlib.contextmanager
def _api(url: str | None) -> Iterator[None]:
    """Talk to the Prefect API at ``url`` (Icechunk calls credentials from its own threads,
    where the task's settings context is not set)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if url and PREFECT_API_URL.value() != url:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    else:
        yield


@dataclass(frozen=True)
class SecretRef:
    """Where one secret value lives in the Prefect API.

    ``block`` is a block slug (``<block-type-slug>/<name>``). With ``field`` unset
    the block is a ``Secret`` block and its value is used; otherwise the value is
    that field of the block (e.g. ``secret_access_key`` of a saved
    :class:`~icechunk_prefect.storage.block.IcechunkRepository`).

    Example:
        ```python
        from icechunk_prefect.storage.credentials import SecretRef

        ref = SecretRef("secret/aws-secret-key")
        print(ref)  # SecretRef(block='secret/aws-secret-key', field=None)
        ```
    """

    block: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.block}#{self.field}" if self.field else self.block


def _load_block(slug: str) -> Any:
    # Block.load finds the class by the document's type: Secret is registered here, our
    # IcechunkRepository by the package's "prefect.collections" entry point (Prefect
    # loads collections before it looks a block class up).
    import prefect.blocks.system  # noqa: F401
    from prefect.blocks.core import Block

    try:
        return Block.load(slug, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        raise ConfigurationError(
            f"Could not load the Prefect block {slug!r} holding storage credentials: {exc}. "
            "Check that it is saved on the Prefect API the workers report to."
        ) from exc


def _value(ref: SecretRef, cache: dict[str, Any]) -> str:
    block = cache.get(ref.block)
    if block is None:
        block = cache[ref.block] = _load_block(ref.block)
    raw = block.get() if ref.field is None else getattr(block, ref.field, None)
    if raw is not None and hasattr(raw, "get_secret_value"):
        raw = raw.get_secret_value()
    if not isinstance(raw, str) or not raw:
        raise ConfigurationError(
            f"The Prefect block {ref.block!r} holds no text value"
            f"{f' in field {ref.field!r}' if ref.field else ''} (seen {type(raw).__name__}); "
            "store the credential there as a string."
        )
    return raw


@dataclass(frozen=True)
class S3CredentialsFetcher:
    """Icechunk ``get_credentials`` callable: S3 keys loaded from the Prefect API when needed.

    Pickles as references only (block slugs and the API URL), never values.

    Example:
        ```python
        import pickle
        from icechunk_prefect.storage.credentials import S3CredentialsFetcher, SecretRef

        fetch = S3CredentialsFetcher(
            access_key_id=SecretRef("secret/aws-key-id"),
            secret_access_key=SecretRef("secret/aws-secret-key"),
        )
        assert b"secret/aws-secret-key" in pickle.dumps(fetch)  # a name, not a value
        ```
    """

    access_key_id: SecretRef
    secret_access_key: SecretRef
    session_token: SecretRef | None = None
    api_url: str | None = field(default_factory=current_api_url)

    def __call__(self) -> icechunk.S3StaticCredentials:
        cache: dict[str, Any] = {}
        with _api(self.api_url):
            return icechunk.S3StaticCredentials(
                access_key_id=_value(self.access_key_id, cache),
                secret_access_key=_value(self.secret_access_key, cache),
                session_token=_value(self.session_token, cache) if self.session_token else None,
            )


@dataclass(frozen=True)
class GcsTokenFetcher:
    """Icechunk ``get_credentials`` callable: a GCS bearer token loaded from the Prefect API.

    Example:
        ```python
        from icechunk_prefect.storage.credentials import GcsTokenFetcher, SecretRef

        fetch = GcsTokenFetcher(bearer_token=SecretRef("secret/gcs-token"))
        ```
    """

    bearer_token: SecretRef
    api_url: str | None = field(default_factory=current_api_url)

    def __call__(self) -> icechunk.GcsBearerCredential:
        with _api(self.api_url):
            return icechunk.GcsBearerCredential(bearer=_value(self.bearer_token, {}))

"""S3 access for the whole trainer: one client, one local cache, errors in words.

Everything the trainer reads or writes in S3 goes through `S3Store`: the dataset, a base model
kept in S3, the prepared-feature cache, checkpoints and results. Why one place:
- the client is built once from `spec.storage` (endpoint for MinIO and friends, region,
  addressing style) with botocore's adaptive retries, so throttling (503 SlowDown) and dropped
  connections are retried the same way everywhere;
- downloads land in a local cache keyed by the object's ETag (under `WFT_CACHE_DIR`), so a
  second run downloads nothing that has not changed;
- botocore errors become `TrainerFailure`s that name the bucket and key (S3AccessDenied,
  S3NotFound), never a raw traceback.

Credentials come from the standard AWS chain: the Job injects AWS_ACCESS_KEY_ID/... from
`spec.storage.credentialsSecret`, or the pod's workload identity (web identity token) applies.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from wft_api.conditions import Reason
from wft_api.v1alpha1 import StorageSpec

from .errors import TrainerFailure

DEFAULT_CONCURRENCY = 16
# Connect fast (a wrong endpoint should fail in seconds), read patiently (large objects, busy
# MinIO); adaptive retry mode adds client-side rate limiting when S3 answers SlowDown.
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 120
MAX_ATTEMPTS = 10
# Errors while streaming a body (after the GET itself succeeded) are not retried by botocore.
BODY_ATTEMPTS = 5
_CHUNK = 1 << 20
# The file that says a folder is complete (written last, read first: `put_folder`): a run's
# results, a prepared dataset, a converted model.
SUCCESS = "_SUCCESS"

_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "AllAccessDisabled", "AccountProblem", "ExpiredToken", "InvalidToken"}  # fmt: skip
_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


class S3Object(NamedTuple):
    """One listed object; a tuple (key, size, etag), ETag without quotes."""

    key: str
    size: int
    etag: str


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key"); the key may be empty."""
    if not uri.startswith("s3://"):
        raise TrainerFailure(Reason.BAD_DATA, f"{uri!r} is not an s3:// URI (s3://bucket/key)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise TrainerFailure(Reason.BAD_DATA, f"{uri!r} has no bucket name (s3://bucket/key)")
    return bucket, key


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def default_cache_dir() -> Path:
    """WFT_CACHE_DIR, else $XDG_CACHE_HOME/wft, else ~/.cache/wft."""
    if os.environ.get("WFT_CACHE_DIR"):
        return Path(os.environ["WFT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wft"


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    if code:
        return str(code)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(status or "")


def _translate(err: Exception, action: str, bucket: str, key: str) -> TrainerFailure:
    """A botocore error as a failure that names the object and the likely fix."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = s3_uri(bucket, key)
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return TrainerFailure(
            Reason.S3_ACCESS_DENIED,
            f"no S3 credentials for {action} {where}: none in the environment "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), in ~/.aws/credentials "
            "or ~/.aws/config, or from a workload identity or instance role. In a cluster set "
            "spec.storage.credentialsSecret (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a "
            "workload-identity serviceAccountName; locally export the two variables (wft up "
            "prints them for its S3)",
        )
    if isinstance(err, EndpointConnectionError):
        return TrainerFailure(
            Reason.TRAINER_ERROR,
            f"cannot reach the S3 endpoint for {action} {where}: {err} "
            "(check spec.storage.endpoint and the network)",
        )
    if isinstance(err, ClientError):
        code = _error_code(err)
        if code in _DENIED:
            return TrainerFailure(
                Reason.S3_ACCESS_DENIED,
                f"access denied {action} {where} ({code}; check spec.storage.credentialsSecret "
                "or the service account's permissions for this bucket and key)",
            )
        if code == "NoSuchBucket":
            return TrainerFailure(
                Reason.S3_NOT_FOUND,
                f"bucket {bucket!r} does not exist ({action} {where}; check the s3:// URI and "
                "spec.storage.endpoint)",
            )
        if code in _MISSING:
            return TrainerFailure(
                Reason.S3_NOT_FOUND,
                f"no such object: bucket {bucket!r}, key {key!r} ({action} {where})",
            )
        return TrainerFailure(Reason.TRAINER_ERROR, f"S3 error {code} {action} {where}: {err}")
    return TrainerFailure(Reason.TRAINER_ERROR, f"S3 failure {action} {where}: {err}")


def _s3_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


@contextlib.contextmanager
def _errors(action: str, bucket: str, key: str) -> Iterator[None]:
    try:
        yield
    except _s3_errors() as err:
        raise _translate(err, action, bucket, key) from err


class S3Store:
    """The trainer's S3 client, cache and error translation (thread-safe)."""

    def __init__(
        self,
        client: Any,
        cache_dir: Path | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.client = client
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.concurrency = max(1, concurrency)
        self._lock = threading.Lock()
        self.stats = {"downloads": 0, "cache_hits": 0, "bytes_downloaded": 0}

    @classmethod
    def from_spec(
        cls,
        storage: StorageSpec | None = None,
        cache_dir: Path | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> S3Store:
        import boto3
        from botocore.config import Config

        storage = storage or StorageSpec()
        config = Config(
            retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            # One connection per concurrent download plus a few for listings and uploads.
            max_pool_connections=concurrency + 4,
            s3={"addressing_style": storage.addressing_style},
        )
        region = (
            storage.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        # endpoint_url=None lets botocore honour AWS_ENDPOINT_URL(_S3) from the environment.
        client = boto3.session.Session().client(
            "s3", endpoint_url=storage.endpoint, region_name=region, config=config
        )
        return cls(client, cache_dir=cache_dir, concurrency=concurrency)

    # -- reading -------------------------------------------------------------------------------

    def list(self, prefix_uri: str) -> Iterator[S3Object]:
        """Every object under the prefix, in key order (paginated)."""
        bucket, prefix = parse_s3_uri(prefix_uri)
        with _errors("listing", bucket, prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield S3Object(obj["Key"], int(obj["Size"]), obj["ETag"].strip('"'))

    def require_objects(self, prefix_uri: str, field: str) -> None:
        """Fail with S3NotFound, naming the spec field, when nothing is under the prefix."""
        if next(iter(self.list(prefix_uri)), None) is None:
            raise TrainerFailure(
                Reason.S3_NOT_FOUND, f"{field}: no objects under {prefix_uri} (is the URI right?)"
            )

    def head(self, uri: str) -> S3Object:
        bucket, key = parse_s3_uri(uri)
        with _errors("reading", bucket, key):
            resp = self.client.head_object(Bucket=bucket, Key=key)
        return S3Object(key, int(resp["ContentLength"]), resp["ETag"].strip('"'))

    def exists(self, uri: str) -> bool:
        try:
            self.head(uri)
        except TrainerFailure as err:
            if err.reason == Reason.S3_NOT_FOUND:
                return False
            raise
        return True

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = parse_s3_uri(uri)
        with _errors("reading", bucket, key):
            data, _ = self._get(bucket, key, None)
        return data

    def read_text(self, uri: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(uri).decode(encoding)

    def cached(self, uri: str, etag: str | None = None) -> Path:
        """A local copy of the object, from the ETag-keyed cache when it is there.

        With `etag` (from a listing) a cached copy is used without asking S3 at all; without it,
        one HEAD request finds the current ETag. Returns the cache path (do not modify it).
        """
        bucket, key = parse_s3_uri(uri)
        if etag is None:
            etag = self.head(uri).etag
        path = self._cache_path(bucket, key, etag)
        if path.exists():
            with self._lock:
                self.stats["cache_hits"] += 1
            return path
        with _errors("reading", bucket, key):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    _, got_etag = self._get(bucket, key, out)
                # The object may have changed since the listing: file it under what we got.
                final = self._cache_path(bucket, key, got_etag)
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return final

    def download(self, uri: str, dest: Path | str, etag: str | None = None) -> Path:
        """Copy the object to `dest` (through the cache)."""
        src = self.cached(uri, etag)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(src, dest)
        return dest

    def download_prefix(
        self,
        uri: str,
        dest_dir: Path | str,
        cache: bool = True,
        on_file: Callable[[S3Object], None] | None = None,
        select: Callable[[str], bool] | None = None,
    ) -> builtins.list[Path]:  # builtins: this class has a method named `list`
        """Mirror everything under the prefix into dest_dir (relative paths kept), in parallel.

        With `cache`, unchanged objects come from the ETag cache (no GET); without it every
        object is fetched again. `select`, given the path relative to the prefix, picks a part.
        """
        bucket, prefix = parse_s3_uri(uri)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        objects = [
            o
            for o in self.list(s3_uri(bucket, prefix))
            if not o.key.endswith("/") and (select is None or select(o.key[len(prefix) :]))
        ]
        if not objects:
            raise TrainerFailure(
                Reason.S3_NOT_FOUND, f"nothing under s3://{bucket}/{prefix} (bucket {bucket!r})"
            )
        dest_root = Path(dest_dir)

        def fetch(obj: S3Object) -> Path:
            rel = obj.key[len(prefix) :]
            target = _safe_join(dest_root, rel)
            if cache:
                self.download(s3_uri(bucket, obj.key), target, etag=obj.etag)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with _errors("reading", bucket, obj.key), open(target, "wb") as out:
                    self._get(bucket, obj.key, out)
            if on_file:
                on_file(obj)
            return target

        return list(self.map_parallel(fetch, objects))

    def map_parallel(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """fn over items with at most `concurrency` in flight; results in input order."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            yield from pool.map(fn, items)

    # -- writing -------------------------------------------------------------------------------

    def upload_file(self, path: Path | str, uri: str) -> None:
        bucket, key = parse_s3_uri(uri)
        with _errors("writing", bucket, key):
            self.client.upload_file(str(path), bucket, key)

    def upload_dir(
        self, directory: Path | str, uri: str, skip: Collection[str] = ()
    ) -> builtins.list[str]:
        """Upload every file under `directory` (but the relative paths in `skip`) below the
        prefix `uri`; return the URIs."""
        bucket, prefix = parse_s3_uri(uri)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        root = Path(directory)
        files = sorted(
            p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in skip
        )

        def put(path: Path) -> str:
            target = s3_uri(bucket, prefix + path.relative_to(root).as_posix())
            self.upload_file(path, target)
            return target

        return list(self.map_parallel(put, files))

    def put_folder(self, directory: Path, uri: str, marker: str, marker_body: bytes = b"") -> None:
        """Upload a folder that readers trust only once `marker` is under it: every other file
        first, the marker last, so that no reader sees the marker beside a partial folder."""
        self.upload_dir(directory, uri, skip={marker})
        self.put_bytes(uri.rstrip("/") + "/" + marker, marker_body)

    def get_folder(self, uri: str, dest: Path, marker: str) -> bool:
        """Mirror a folder `put_folder` wrote into `dest`; False (nothing fetched) when its
        marker is not there. A download that fails halfway never takes `dest`'s place."""
        prefix = uri.rstrip("/") + "/"
        if not self.exists(prefix + marker):
            return False
        partial = dest.with_name(f".{dest.name}.download-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        self.download_prefix(prefix, partial)
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
        return True

    def put_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        bucket, key = parse_s3_uri(uri)
        extra = {"ContentType": content_type} if content_type else {}
        with _errors("writing", bucket, key):
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def delete_prefix(self, prefix_uri: str) -> int:
        """Delete every object under the prefix (1000 keys a request); returns how many."""
        bucket, prefix = parse_s3_uri(prefix_uri)
        keys = [obj.key for obj in self.list(prefix_uri)]
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            with _errors("deleting", bucket, prefix):
                resp = self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            failed = resp.get("Errors") or []
            if failed:  # DeleteObjects reports per-key failures (AccessDenied) in a 200 response
                from botocore.exceptions import ClientError

                first = failed[0]
                body = {
                    "Error": {"Code": first.get("Code", ""), "Message": first.get("Message", "")}
                }
                err = ClientError(body, "DeleteObjects")
                raise _translate(err, "deleting", bucket, first.get("Key", prefix))
        return len(keys)

    def put_json(self, uri: str, value: Any) -> None:
        data = json.dumps(value, indent=2, sort_keys=True).encode()
        self.put_bytes(uri, data, content_type="application/json")

    # -- internals -----------------------------------------------------------------------------

    def _cache_path(self, bucket: str, key: str, etag: str) -> Path:
        # Keys can hold anything ("..", very long names): the cache file name is a digest.
        digest = hashlib.sha256(f"{bucket}\0{key}\0{etag}".encode()).hexdigest()
        return self.cache_dir / "s3" / digest[:2] / digest

    def _get(self, bucket: str, key: str, out: Any) -> tuple[bytes, str]:
        """GET the object into `out` (a binary file) or return its bytes; with body retries.

        botocore retries the request itself (throttling, 5xx, refused connections); a connection
        dropped while the body streams is retried here, from the start.
        """
        from botocore.exceptions import (
            ConnectionClosedError,
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )
        from urllib3.exceptions import ProtocolError

        streaming = (
            ConnectionClosedError,
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
            ProtocolError,
        )
        for attempt in range(BODY_ATTEMPTS):
            resp = self.client.get_object(Bucket=bucket, Key=key)
            try:
                body = resp["Body"]
                if out is None:
                    data = body.read()
                    size = len(data)
                else:
                    out.seek(0)
                    out.truncate()
                    size = 0
                    for chunk in body.iter_chunks(_CHUNK):
                        out.write(chunk)
                        size += len(chunk)
                    data = b""
            except streaming:
                if attempt == BODY_ATTEMPTS - 1:
                    raise
                continue
            with self._lock:
                self.stats["downloads"] += 1
                self.stats["bytes_downloaded"] += size
            return data, str(resp.get("ETag", "")).strip('"')
        raise AssertionError("unreachable")


def _safe_join(root: Path, rel: str) -> Path:
    """root/rel, refusing keys that would escape root ("../x")."""
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise TrainerFailure(Reason.BAD_DATA, f"object key {rel!r} escapes the destination")
    return target


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link where the cache and dest share a file system (no copy), else a copy."""
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)

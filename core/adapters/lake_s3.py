"""The raw lake in an S3 bucket (MinIO in production) through the `minio` client.

Same layout and Parquet files as the local lake: one object per batch and partition, named
`dt=<receipt day>/event_type=<type>/<batch>.parquet`. The bucket is created on first use; with
`retention_days` a lifecycle rule expires lake objects that many days after they were written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator, Sequence

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import MinioException, S3Error
from minio.helpers import MIN_PART_SIZE
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from minio.sse import SseS3

from c360.adapters.lake import files_of, is_lake_file, sql_string
from c360.adapters.lake_parquet import parquet_bytes, read_keys
from c360.errors import AdapterError
from c360.events.model import Event

log = logging.getLogger(__name__)

#: Every lake object's name starts so (`dt=YYYY-MM-DD/...`); listing and expiry keep to it,
#: so objects others keep in the same bucket are neither read nor expired.
LAKE_PREFIX = "dt="

#: The lifecycle rule c360 owns in the bucket; other rules there are left as they are.
RETENTION_RULE_ID = "c360-lake-retention"

#: The IANA media type of Parquet (registered in 2024).
PARQUET_TYPE = "application/vnd.apache.parquet"

#: Connecting fails fast (the server is down or the endpoint is wrong); a large object may
#: take longer to send or read.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0

#: A few quick retries ride out a restarting server without holding a batch for long.
RETRIES = urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])

#: Codes an S3 server answers when it cannot or will not encrypt an object (MinIO without a
#: KMS answers NotImplemented).
_SSE_REFUSALS = frozenset(
    {"NotImplemented", "InvalidEncryptionAlgorithmError", "KMS.NotConfigured", "KMSNotConfigured"}
)
_BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"})
_BAD_REGION = frozenset({"AuthorizationHeaderMalformed", "InvalidRegion"})


class S3Lake:
    """Lake files as objects of one bucket; safe to share between threads."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        *,
        region: str | None = None,
        sse: bool = False,
        retention_days: int | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.bucket = bucket
        self.sse = sse
        self.retention_days = retention_days
        self._access_key = access_key
        self._secret_key = secret_key
        self._client = Minio(
            parts.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parts.scheme == "https",
            region=region,
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
                retries=RETRIES,
                maxsize=10,
                cert_reqs="CERT_REQUIRED",
                ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            ),
        )
        self._lock = threading.Lock()
        self._prepared = False

    def write(self, batch_name: str, events: Sequence[Event]) -> list[str]:
        """Put each partition's events as `<partition>/<batch_name>.parquet`, replacing any
        earlier object of that name."""
        self._prepare()
        written = []
        for name, members in files_of(batch_name, events).items():
            data = parquet_bytes(members)
            with self._translated(f"writing {name!r}", writing=True):
                # One PUT of the whole file, never a multipart upload (the part size is the
                # file's size): S3 makes an object visible only once its PUT is complete, and
                # a PUT over an existing name swaps the whole object at once, so readers see
                # the old file or the new one, never part of one, with no temporary name.
                result = self._client.put_object(
                    self.bucket,
                    name,
                    io.BytesIO(data),
                    len(data),
                    content_type=PARQUET_TYPE,
                    sse=SseS3() if self.sse else None,
                    part_size=max(len(data), MIN_PART_SIZE),
                )
            if self.sse and not result.http_headers.get("x-amz-server-side-encryption"):
                raise AdapterError(
                    f"the S3 server at {self.endpoint} stored {name!r} without server-side "
                    "encryption although it was asked for (SSE-S3); enable encryption on the "
                    "server or turn C360_LAKE_SSE off"
                )
            written.append(name)
        return written

    def files(self) -> list[str]:
        """Names of the lake's objects. An upload still in progress or aborted is no object
        yet, and objects outside the lake's layout are not part of it."""
        self._prepare()
        with self._translated("listing the lake"):
            names = [
                item.object_name or ""
                for item in self._client.list_objects(
                    self.bucket, prefix=LAKE_PREFIX, recursive=True
                )
            ]
        return sorted(name for name in names if is_lake_file(name))

    def read_keys(self, name: str) -> list[tuple[str, str]]:
        """(source, message_id) of every row of one lake object."""
        self._prepare()
        with self._translated(f"reading {name!r}"):
            response = self._client.get_object(self.bucket, name)
            try:
                data = response.read()
            finally:
                response.close()
                response.release_conn()
        return read_keys(io.BytesIO(data))

    def clickhouse_source(self) -> str | None:
        """`s3(...)` over every Parquet object of the bucket, with the lake's keys (ClickHouse
        masks them in its logs; never log this text); None while the lake has no file. The
        ClickHouse server must reach the endpoint at the same address as c360 does."""
        if not self.files():
            return None
        url = f"{self.endpoint}/{self.bucket}/**/*.parquet"
        keys = f"{sql_string(self._access_key)}, {sql_string(self._secret_key)}"
        return f"s3({sql_string(url)}, {keys}, 'Parquet')"

    def _prepare(self) -> None:
        """Create the bucket and set its retention once per process, on first use."""
        with self._lock:
            if self._prepared:
                return
            with self._translated(f"preparing bucket {self.bucket!r}"):
                if not self._client.bucket_exists(self.bucket):
                    self._create_bucket()
            with self._translated("setting the lake's retention", retention=True):
                self._apply_retention()
            self._prepared = True

    def _create_bucket(self) -> None:
        try:
            self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code != "BucketAlreadyOwnedByYou":  # another process created it just now
                raise
        log.info("Created the lake bucket %r at %s.", self.bucket, self.endpoint)

    def _apply_retention(self) -> None:
        """Make c360's lifecycle rule say `retention_days`, or remove it when that is None
        (keep forever), leaving every other rule of the bucket as it is."""
        try:
            current = self._client.get_bucket_lifecycle(self.bucket)
        except S3Error as exc:
            if self.retention_days is None and exc.code in ("NotImplemented", "NotSupported"):
                return  # no lifecycle support, and none is needed
            raise
        rules = list(current.rules) if current else []
        ours = [rule for rule in rules if rule.rule_id == RETENTION_RULE_ID]
        others = [rule for rule in rules if rule.rule_id != RETENTION_RULE_ID]
        if self.retention_days is None:
            if ours:
                self._set_rules(others)
            return
        if len(ours) == 1 and _says(ours[0], self.retention_days):
            return
        self._set_rules([*others, _retention_rule(self.retention_days)])
        log.info(
            "The lake bucket %r now expires lake objects after %d days.",
            self.bucket,
            self.retention_days,
        )

    def _set_rules(self, rules: list[Rule]) -> None:
        if rules:
            self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig(rules))
        else:
            self._client.delete_bucket_lifecycle(self.bucket)

    @contextlib.contextmanager
    def _translated(
        self, doing: str, *, writing: bool = False, retention: bool = False
    ) -> Iterator[None]:
        """Driver errors become AdapterError with a message that names what to change."""
        try:
            yield
        except S3Error as exc:
            raise AdapterError(self._explain(exc, doing, writing, retention)) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise AdapterError(
                f"the S3 lake at {self.endpoint} could not be reached while {doing}: {exc}; "
                "check that the server runs and C360_LAKE_S3_ENDPOINT points at it"
            ) from exc

    def _explain(self, exc: S3Error, doing: str, writing: bool, retention: bool) -> str:
        what = f"the S3 server at {self.endpoint} refused {doing}"
        said = f"{exc.code}: {exc.message}"
        if writing and self.sse and _refuses_sse(exc):
            return (
                f"{what}: it does not do server-side encryption (SSE-S3) as configured ({said});"
                " set up its KMS (MinIO: MINIO_KMS_SECRET_KEY) or turn C360_LAKE_SSE off"
            )
        if retention and exc.code in ("NotImplemented", "NotSupported"):
            return (
                f"{what}: it has no lifecycle rules, so lake objects cannot expire ({said}); "
                "leave C360_LAKE_RETENTION_DAYS empty to keep them for good"
            )
        if exc.code in _BAD_CREDENTIALS:
            return (
                f"{what}: the lake's credentials are wrong or may not use bucket "
                f"{self.bucket!r} ({said}); check C360_LAKE_S3_ACCESS_KEY and "
                "C360_LAKE_S3_SECRET_KEY"
            )
        if exc.code in _BAD_REGION:
            return f"{what}: wrong region ({said}); check C360_LAKE_S3_REGION"
        if exc.code == "NoSuchBucket":
            return (
                f"{what}: bucket {self.bucket!r} does not exist (removed while c360 ran?); "
                "restart c360 to create it, or check C360_LAKE_S3_BUCKET"
            )
        return f"{what} ({said})"


def _retention_rule(days: int) -> Rule:
    return Rule(
        ENABLED,
        rule_filter=Filter(prefix=LAKE_PREFIX),
        rule_id=RETENTION_RULE_ID,
        expiration=Expiration(days=days),
    )


def _says(rule: Rule, days: int) -> bool:
    """True if `rule` is c360's retention rule as `_retention_rule(days)` makes it."""
    prefix = rule.rule_filter.prefix if rule.rule_filter else None
    expires = rule.expiration.days if rule.expiration else None
    return rule.status == ENABLED and prefix == LAKE_PREFIX and expires == days


def _refuses_sse(exc: S3Error) -> bool:
    text = f"{exc.code} {exc.message}".lower()
    return exc.code in _SSE_REFUSALS or "encrypt" in text or "kms" in text

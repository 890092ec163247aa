"""The adapter for COS and Cloud Infinite: the only module that imports the SDK.

It builds one client per region for a warm container (rebuilt when the role's temporary
credentials change), turns the SDK's exceptions into `CosCallError` with a retryable flag,
and hands back plain Python values.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode
from urllib.request import getproxies
from xml.parsers.expat import ExpatError

import requests
import xmltodict
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosClientError, CosServiceError

from . import cos_facts
from .errors import ConfigurationError, CosCallError, UnreadableReply
from .observability import redact_text
from .settings import Settings
from .writeback import MetadataPlan

# The SDK's per-request timeout; the invocation's own deadline bounds the retries around it.
REQUEST_TIMEOUT_S = 10
# Connections kept per host: enough for a few parallel records.
POOL_SIZE = 16
PRESIGN_EXPIRES_S = 600


class Credentials(NamedTuple):
    secret_id: str
    secret_key: str
    token: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        secret_id, secret_key = env.get("TENCENTCLOUD_SECRETID", ""), env.get("TENCENTCLOUD_SECRETKEY", "")
        if not secret_id or not secret_key:
            raise ConfigurationError(
                "no COS credentials: TENCENTCLOUD_SECRETID and TENCENTCLOUD_SECRETKEY are unset "
                "(on SCF, bind an execution role to the function)"
            )
        return cls(secret_id, secret_key, env.get("TENCENTCLOUD_SESSIONTOKEN") or None)


# What the SDK's (and xmltodict's) parsers raise for a 2xx body they cannot read: a retry reads the same.
_PARSE_ERRORS = (SyntaxError, ExpatError, RecursionError, requests.exceptions.InvalidJSONError)


def _classify(operation: str, error: Exception) -> CosCallError:
    if isinstance(error, _PARSE_ERRORS):
        return UnreadableReply(operation, f"{type(error).__name__}: {redact_text(str(error))}")
    if isinstance(error, CosServiceError):
        status = error.get_status_code()
        code = str(error.get_error_code())
        # A 2xx carrying an error document: PUT Object - Copy can fail after it started and still
        # answer 200 OK (436/10881); nothing was written, and a retry may succeed.
        in_body = status is not None and 200 <= status < 300
        retryable = status == 429 or (status is not None and status >= 500) or code in cos_facts.THROTTLE_CODES
        retryable = retryable or in_body
        return CosCallError(operation, code, str(error.get_error_msg()), status, str(error.get_request_id()), retryable)
    # The SDK wraps network failures in CosClientError, keeping the requests exception as context.
    cause = error.__cause__ or error.__context__
    network = isinstance(cause, requests.RequestException) or isinstance(error, requests.RequestException)
    code = "NetworkError" if network else "ClientError"
    # Redacted before it is cut: the text can hold a signed URL, and it travels in the summary too.
    return CosCallError(operation, code, redact_text(str(error))[:300], None, "", network)


def _session() -> requests.Session:
    """The clients' HTTP session, with the connection pools the SDK would build for itself.

    requests looks at the environment on every request: for proxy variables (reading every
    variable, twice), a CA bundle variable and a .netrc. With a few dozen variables that is about
    a tenth of a millisecond a request, several times what the function's own code spends on a
    record. The environment does not change under a warm container, so it is read once here: a
    CA bundle becomes the session's (the SDK passes no `verify` of its own under these settings),
    and the per-request look-up stays on only when a proxy or a .netrc could change a request.
    """
    session = requests.Session()
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if ca_bundle:
        session.verify = ca_bundle
    netrc = os.environ.get("NETRC") or any(os.path.exists(os.path.expanduser(f"~/{n}")) for n in (".netrc", "_netrc"))
    session.trust_env = bool(getproxies() or netrc)
    adapter = requests.adapters.HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _to_dict(body: Any) -> Any:
    """The SDK parses XML only under exactly `application/xml`; parse what it passed through."""
    if isinstance(body, (bytes, str)) and body.strip():
        try:
            parsed = xmltodict.parse(body)
        except (*_PARSE_ERRORS, ValueError) as error:
            raise UnreadableReply("DetectLabel", f"{type(error).__name__}: {redact_text(str(error))}") from error
        if isinstance(parsed, dict) and len(parsed) == 1:
            return next(iter(parsed.values()))
        return parsed
    return body


class CosGateway:
    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._env = env
        self._clients: dict[tuple[str, Credentials], CosS3Client] = {}
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def credentials(self) -> Credentials:
        return Credentials.from_env(self._env)

    def client(self, region: str) -> CosS3Client:
        creds = self.credentials()
        with self._lock:
            client = self._clients.get((region, creds))
            if client is None:
                # Credentials rotated (or first use): drop clients built with the old ones.
                self._clients = {k: v for k, v in self._clients.items() if k[1] == creds}
                if self._session is None:
                    self._session = _session()
                client = CosS3Client(self._config(region, creds), retry=0, session=self._session)
                self._clients[(region, creds)] = client
            return client

    def _config(self, region: str, creds: Credentials) -> CosConfig:
        kwargs: dict[str, Any] = dict(
            Region=region,
            SecretId=creds.secret_id,
            SecretKey=creds.secret_key,
            Token=creds.token,
            Timeout=REQUEST_TIMEOUT_S,
            Scheme="https",
        )
        if self._settings.cos_endpoint is not None:
            # Send every request to this address but keep the bucket's virtual-host Host header.
            scheme, host, port = self._settings.cos_endpoint
            kwargs.update(Scheme=scheme, IP=host, Port=port)
        return CosConfig(**kwargs)

    def call(self, operation: str, region: str, fn_name: str, **kwargs: Any) -> Any:
        """One SDK call by method name; its failure as a `CosCallError` (the tooling's calls too)."""
        client = self.client(region)
        try:
            return getattr(client, fn_name)(**kwargs)
        except (CosServiceError, CosClientError, requests.RequestException, *_PARSE_ERRORS) as error:
            raise _classify(operation, error) from error

    # --- the calls the function makes ---------------------------------------------------

    def get_tags(self, bucket: str, region: str, key: str) -> list[tuple[str, str]]:
        response = self.call("GetObjectTagging", region, "get_object_tagging", Bucket=bucket, Key=key)
        tags = ((response or {}).get("TagSet") or {}).get("Tag") or []
        if isinstance(tags, Mapping):
            tags = [tags]
        return [(str(t.get("Key", "")), str(t.get("Value") or "")) for t in tags if isinstance(t, Mapping)]

    def put_tags(self, bucket: str, region: str, key: str, tags: Sequence[tuple[str, str]]) -> None:
        tagging = {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags]}}
        self.call("PutObjectTagging", region, "put_object_tagging", Bucket=bucket, Key=key, Tagging=tagging)

    def head(self, bucket: str, region: str, key: str) -> dict[str, str]:
        """The object's headers, names lower-cased (HTTP names are case-insensitive)."""
        response = self.call("HeadObject", region, "head_object", Bucket=bucket, Key=key)
        return {str(k).lower(): str(v) for k, v in (response or {}).items()}

    def get_acl(self, bucket: str, region: str, key: str) -> Any:
        """The object's ACL as GET Object acl answers it (the SDK's dict; the effective ACL when
        the object has none of its own)."""
        return self.call("GetObjectACL", region, "get_object_acl", Bucket=bucket, Key=key)

    def read_first_bytes(self, bucket: str, region: str, key: str, count: int) -> bytes:
        response = self.call("GetObject", region, "get_object", Bucket=bucket, Key=key, Range=f"bytes=0-{count - 1}")
        try:
            return bytes(response["Body"].get_raw_stream().read(count))
        except (requests.RequestException, OSError) as error:
            raise _classify("GetObject", error) from error

    def detect_labels(
        self, bucket: str, region: str, key: str, scenes: Sequence[str], detect_url: str | None = None
    ) -> Any:
        kwargs: dict[str, Any] = dict(Bucket=bucket, Key="" if detect_url else key, Scenes=",".join(scenes))
        if detect_url:
            kwargs["DetectUrl"] = detect_url
        return _to_dict(self.call("DetectLabel", region, "ci_image_detect_label", **kwargs))

    def copy_in_place(self, bucket: str, region: str, key: str, plan: MetadataPlan, if_match: str) -> None:
        metadata = dict(plan.metadata)
        metadata["x-cos-tagging-directive"] = "Copy"  # the SDK has no keyword for it; keep the tags
        # Encryption and x-cos-grant-* headers: the SDK sends `Metadata=`'s keys verbatim, and has
        # no keyword for some grant headers.
        metadata.update(plan.carried)
        kwargs: dict[str, Any] = dict(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key, "Region": region},
            CopyStatus="Replaced",
            Metadata=metadata,
            StorageClass=plan.storage_class,
            **plan.headers,
        )
        if if_match:
            kwargs["CopySourceIfMatch"] = if_match  # fail rather than overwrite newer content
        self.call("CopyObject", region, "copy_object", **kwargs)

    def thumbnail_url(self, bucket: str, region: str, key: str, rule: str) -> str:
        """A signed URL for a Cloud Infinite rendition of the object, for detect-url.

        The processing parameter follows the signature, unsigned, as Cloud Infinite's docs
        show for private objects; COS checks only the parameters the signature lists.
        """
        client = self.client(region)
        host = cos_facts.cos_host(bucket, region)
        # Temporary keys need their token in the URL, signed with it, as COS's presign docs show.
        token = self.credentials().token
        params = {"x-cos-security-token": token} if token else {}
        # Sign the bucket's own host, the one CI fetches from (not a local endpoint's address).
        sign = client.get_auth(
            Method="GET", Bucket=bucket, Key=key, Expired=PRESIGN_EXPIRES_S, Headers={"Host": host}, Params=params
        )
        query = urlencode(dict(item.split("=", 1) for item in sign.split("&")))
        if params:
            query += "&" + urlencode(params)
        return f"https://{host}/{quote(key, safe='/')}?{query}&{rule}"

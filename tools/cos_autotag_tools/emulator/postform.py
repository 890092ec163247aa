"""POST Object: an HTML-form (multipart/form-data) upload signed with a policy.

The form carries `key`, `policy` (base64 JSON), `q-sign-algorithm`, `q-ak`, `q-key-time`,
`q-signature`, optional content fields and `x-cos-meta-*`, and the `file` last. COS checks the
signature over the policy text, the policy's expiration and every condition in it
("eq"/exact, "starts-with", "content-length-range") against the form.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from datetime import datetime, timezone
from typing import cast
from urllib.parse import quote

import python_multipart
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File

from cos_autotag_tools import cos_facts

from . import auth, xml_bodies
from .backend import (
    Backend,
    check_content_md5,
    content_headers_from,
    object_url,
    storage_class_from,
    tags_from_header,
    user_metadata_from,
)
from .errors import CosError
from .messages import Request, Response, latin1_to_text


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], str | None, bytes | None]:
    """(fields, file name, file data) of a multipart/form-data body. Field names keep their case."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type.lower():
        raise CosError("MalformedPOSTRequest", "POST Object needs a multipart/form-data body with a boundary")
    parts: list[tuple[str, str | None, bytes]] = []  # (name, file name, content)

    def on_field(part: Field) -> None:
        parts.append(((part.field_name or b"").decode(), None, part.value or b""))

    def on_file(part: File) -> None:
        part.file_object.seek(0)
        parts.append(((part.field_name or b"").decode(), (part.file_name or b"").decode(), part.file_object.read()))

    try:
        python_multipart.parse_form(
            {"Content-Type": content_type.encode("latin-1")}, io.BytesIO(body), on_field, on_file
        )
    except (FormParserError, ValueError) as error:
        raise CosError("MalformedPOSTRequest", f"The form is not valid multipart/form-data: {error}") from None
    files = [part for part in parts if part[0] == "file"]
    if len(files) > 1:
        raise CosError("IncorrectNumberOfFilesInPostRequest", "POST Object takes exactly one file")
    fields = {name: content.decode("utf-8") for name, _, content in parts if name != "file"}
    if not files:
        return fields, None, None
    _, filename, data = files[0]
    return fields, filename or "", data


def _policy_conditions(policy: dict[str, object]) -> list[tuple[str, str, object]]:
    """Normalise conditions to (op, field, value) with op in eq / starts-with / content-length-range."""
    raw = policy.get("conditions", [])
    if not isinstance(raw, list):
        raise CosError("InvalidPolicyDocument", "policy conditions must be a list")
    out: list[tuple[str, str, object]] = []
    for cond in raw:
        if isinstance(cond, dict) and len(cond) == 1:
            ((name, value),) = cond.items()
            out.append(("eq", str(name).lower(), value))
        elif isinstance(cond, list) and len(cond) == 3:
            op = str(cond[0]).lower()
            if op == "content-length-range":
                if not all(
                    isinstance(bound, int) or (isinstance(bound, str) and bound.isdigit()) for bound in cond[1:]
                ):
                    raise CosError("InvalidPolicyDocument", f"content-length-range takes two whole numbers: {cond!r}")
                out.append((op, "", (int(cond[1]), int(cond[2]))))
            elif op in ("eq", "starts-with") and isinstance(cond[1], str) and cond[1].startswith("$"):
                out.append((op, cond[1][1:].lower(), cond[2]))
            else:
                raise CosError("InvalidPolicyDocument", f"unsupported policy condition {cond!r}")
        else:
            raise CosError("InvalidPolicyDocument", f"unsupported policy condition {cond!r}")
    return out


_ISO_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def _expiration_timestamp(text: str) -> float:
    """The policy's ISO 8601 expiration ("2019-08-30T09:38:12.414Z"; fractions of any length)."""
    match = _ISO_RE.match(text.strip())
    if not match:
        raise CosError("InvalidPolicyDocument", f"policy expiration {text!r} is not ISO 8601")
    zone = match.group(2) or "Z"
    stamp = datetime.fromisoformat(match.group(1) + ("+00:00" if zone == "Z" else zone))
    return stamp.replace(tzinfo=stamp.tzinfo or timezone.utc).timestamp()


def _check_policy(policy: dict[str, object], values: dict[str, str], size: int, now: float) -> None:
    expiration = policy.get("expiration")
    if not isinstance(expiration, str):
        raise CosError("InvalidPolicyDocument", "policy expiration is missing")
    if _expiration_timestamp(expiration) < now:
        raise CosError("AccessDenied", "Invalid according to Policy: Policy expired.")
    for op, name, expected in _policy_conditions(policy):
        if op == "content-length-range":
            low, high = cast("tuple[int, int]", expected)
            if not low <= size <= high:
                raise CosError(
                    "EntityTooLarge" if size > high else "EntityTooSmall",
                    f"The file is {size} bytes; the policy allows {low}-{high}",
                )
            continue
        actual = values.get(name)
        if actual is None:
            raise CosError("AccessDenied", f"Invalid according to Policy: the form has no {name} field")
        if (op == "eq" and actual != str(expected)) or (op == "starts-with" and not actual.startswith(str(expected))):
            raise CosError(
                "AccessDenied", f"Invalid according to Policy: Policy Condition failed: [{op!r}, ${name}, {expected!r}]"
            )


def post_object(backend: Backend, req: Request) -> Response:
    fields, filename, data = parse_form(req.header("content-type") or "", req.body)
    if data is None:
        raise CosError("MalformedPOSTRequest", "The form has no file field (it must be the last field)")
    key = fields.get("key", "")
    if not key:
        raise CosError("InvalidArgument", "The form has no key field")
    key = key.replace("${filename}", filename or "")
    if len(key.encode()) > cos_facts.KEY_MAX_BYTES:
        raise CosError("KeyTooLong", f"The key is longer than {cos_facts.KEY_MAX_BYTES} bytes")
    try:
        policy_text = base64.b64decode(fields.get("policy", ""), validate=True).decode("utf-8")
        policy = json.loads(policy_text)
    except (binascii.Error, ValueError):
        raise CosError("InvalidPolicyDocument", "policy must be base64-encoded JSON") from None
    if not isinstance(policy, dict) or not fields.get("policy"):
        raise CosError("InvalidPolicyDocument", "policy must be a JSON object")
    lowered = {name.lower(): value for name, value in fields.items()}
    req.secret_id = auth.verify_post_signature(
        fields=lowered, policy_text=policy_text, credentials=backend.credentials, token=backend.token
    )
    values = dict(lowered)
    values["key"] = key
    values["bucket"] = req.bucket or ""
    values.setdefault("q-sign-time", lowered.get("q-key-time", ""))
    _check_policy(policy, values, len(data), req.received_at)
    check_content_md5(lowered.get("content-md5"), data)

    pairs = list(lowered.items())
    state = backend.store.put(
        req.bucket or "",
        key,
        data,
        headers=content_headers_from(pairs),
        metadata=user_metadata_from(pairs),
        tags=tags_from_header(lowered.get("x-cos-tagging")),
        storage_class=storage_class_from(lowered.get("x-cos-storage-class")),
        request_id=req.request_id,
    )
    # COS passes a signature on to the trigger event; for a form it is the form's q-* fields.
    req.authorization = (
        f"q-sign-algorithm=sha1&q-ak={lowered['q-ak']}&q-sign-time={lowered['q-key-time']}"
        f"&q-key-time={lowered['q-key-time']}&q-header-list=&q-url-param-list=&q-signature={lowered['q-signature']}"
    )
    backend.emit(cos_facts.EVENT_POST, req, state)
    location = object_url(req.bucket or "", req.region or "", key)
    headers = {"ETag": state.etag, "Location": location}
    redirect = lowered.get("success_action_redirect")
    if redirect:
        sep = "&" if "?" in redirect else "?"
        headers["Location"] = (
            f"{redirect}{sep}bucket={quote(req.bucket or '')}&key={quote(key)}&etag={quote(state.etag)}"
        )
        return Response(303, headers)
    status = lowered.get("success_action_status", "204")
    if status == "201":
        return Response(
            201,
            {**headers, "Content-Type": xml_bodies.XML_CONTENT_TYPE},
            xml_bodies.post_response_body(location, req.bucket or "", key, state.etag),
        )
    return Response(200 if status == "200" else 204, headers)


def form_content_type(req: Request) -> bool:
    return latin1_to_text(req.header("content-type") or "").lower().startswith("multipart/form-data")

"""Object ACLs and server-side encryption, with COS's copy semantics (PUT Object - Copy, 436/10881).

- An object's own ACL comes from `x-cos-acl` / `x-cos-grant-*` on PUT or copy, or from PUT Object
  acl. Without them the object has none of its own (`None`): it inherits the bucket's, and GET
  Object acl answers the effective one (the owner's FULL_CONTROL, plus AllUsers READ in a
  public-read bucket). A copy that sends no ACL headers gives the destination that default,
  dropping the source's own ACL.
- `x-cos-server-side-encryption` (`AES256`, or `cos/kms` with an optional key id) is stored on
  PUT and answered on HEAD and GET. A copy that does not send it stores the destination
  unencrypted.

GET Object acl answers `<AccessControlPolicy><Owner/><AccessControlList><Grant>...`, the shape the
SDK's `get_object_acl` reads (grantee type as an `xsi:type` attribute).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict

from .errors import CosError

SSE_HEADER = "x-cos-server-side-encryption"
SSE_KMS_KEY_HEADER = "x-cos-server-side-encryption-cos-kms-key-id"
SSE_ALGORITHMS = ("AES256", "cos/kms")

ALL_USERS = "http://cam.qcloud.com/groups/global/AllUsers"
PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
CANNED = ("private", "public-read", "default")
BUCKET_CANNED = ("private", "public-read")
_GRANT_HEADERS = {
    "x-cos-grant-read": "READ",
    "x-cos-grant-write": "WRITE",
    "x-cos-grant-read-acp": "READ_ACP",
    "x-cos-grant-write-acp": "WRITE_ACP",
    "x-cos-grant-full-control": "FULL_CONTROL",
}
_GRANTEE_RE = re.compile(r'\s*(id|uri)\s*=\s*"([^"]+)"\s*')
_XSI = "http://www.w3.org/2001/XMLSchema-instance"

# An ACL is a list of (grantee, permission); a grantee is "id:<qcs::cam::...>" or "uri:<group>".
Grants = list[tuple[str, str]]


def owner_id(uin: str) -> str:
    return f"qcs::cam::uin/{uin}:uin/{uin}"


def sse_from(headers: Mapping[str, str]) -> dict[str, str]:
    """The encryption a PUT or copy asks for (lower-cased header names), checked; {} for none."""
    algorithm = headers.get(SSE_HEADER)
    if algorithm is None:
        if SSE_KMS_KEY_HEADER in headers:
            raise CosError("InvalidArgument", f"{SSE_KMS_KEY_HEADER} needs {SSE_HEADER}: cos/kms")
        return {}
    if algorithm not in SSE_ALGORITHMS:
        raise CosError("InvalidArgument", f"{SSE_HEADER} must be one of {', '.join(SSE_ALGORITHMS)}, not {algorithm!r}")
    sse = {SSE_HEADER: algorithm}
    key_id = headers.get(SSE_KMS_KEY_HEADER)
    if key_id is not None:
        if algorithm != "cos/kms":
            raise CosError("InvalidArgument", f"{SSE_KMS_KEY_HEADER} goes only with {SSE_HEADER}: cos/kms")
        sse[SSE_KMS_KEY_HEADER] = key_id
    return sse


def canned_grants(canned: str, owner: str) -> Grants | None:
    """The grants of a canned ACL; None for `default` (no ACL of its own)."""
    if canned not in CANNED:
        raise CosError("InvalidArgument", f"x-cos-acl must be one of {', '.join(CANNED)}, not {canned!r}")
    if canned == "default":
        return None
    grants = [(f"id:{owner}", "FULL_CONTROL")]
    if canned == "public-read":
        grants.append((f"uri:{ALL_USERS}", "READ"))
    return grants


def acl_from_headers(headers: Mapping[str, str], owner: str) -> tuple[bool, Grants | None]:
    """(whether the request set an ACL, the grants it set) from `x-cos-acl` / `x-cos-grant-*`."""
    canned = headers.get("x-cos-acl")
    grant_values = {name: headers[name] for name in _GRANT_HEADERS if name in headers}
    if canned is None and not grant_values:
        return False, None
    grants = canned_grants(canned, owner) if canned is not None else [(f"id:{owner}", "FULL_CONTROL")]
    if grant_values:
        grants = list(grants or [(f"id:{owner}", "FULL_CONTROL")])
        for name, value in grant_values.items():
            for grantee in _parse_grantees(name, value):
                if (grantee, _GRANT_HEADERS[name]) not in grants:
                    grants.append((grantee, _GRANT_HEADERS[name]))
    return True, grants


def _parse_grantees(name: str, value: str) -> list[str]:
    parts = [part for part in value.split(",") if part.strip()]
    grantees = []
    for part in parts:
        match = _GRANTEE_RE.fullmatch(part)
        if not match:
            raise CosError("InvalidArgument", f'{name} must list id="qcs::cam::uin/..." or uri="..." grantees')
        grantees.append(f"{match.group(1)}:{match.group(2)}")
    if not grantees:
        raise CosError("InvalidArgument", f"{name} names no grantee")
    return grantees


def acl_from_body(body: bytes, owner: str) -> Grants:
    """The grants of a PUT Object acl body (`<AccessControlPolicy>`); a bad body is 400 MalformedXML."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise CosError("MalformedXML", "DTDs are not allowed in the request body")
    try:
        doc = xmltodict.parse(body, process_namespaces=False)
    except (ExpatError, ValueError) as exc:
        raise CosError("MalformedXML", f"The XML you provided was not well-formed: {exc}") from exc
    policy = doc.get("AccessControlPolicy") if isinstance(doc, dict) else None
    if not isinstance(policy, dict):
        raise CosError("MalformedXML", "The root element must be <AccessControlPolicy>")
    acl = policy.get("AccessControlList") or {}
    raw = acl.get("Grant", []) if isinstance(acl, dict) else None
    if raw is None or isinstance(raw, str):
        raise CosError("MalformedXML", "<AccessControlList> must hold <Grant> elements")
    grants: Grants = []
    for grant in [raw] if isinstance(raw, dict) else raw:
        grantee = grant.get("Grantee") if isinstance(grant, dict) else None
        permission = grant.get("Permission") if isinstance(grant, dict) else None
        if not isinstance(grantee, dict) or permission not in PERMISSIONS:
            raise CosError("MalformedXML", f"every <Grant> needs a <Grantee> and a <Permission> of {PERMISSIONS}")
        if isinstance(grantee.get("ID"), str) and grantee["ID"]:
            grants.append((f"id:{grantee['ID']}", str(permission)))
        elif isinstance(grantee.get("URI"), str) and grantee["URI"]:
            grants.append((f"uri:{grantee['URI']}", str(permission)))
        else:
            raise CosError("MalformedXML", "a <Grantee> needs an <ID> or a <URI>")
    if not grants:
        raise CosError("MalformedXML", "<AccessControlList> lists no <Grant>")
    return grants


def effective(own: Grants | None, bucket_canned: str, owner: str) -> Grants:
    """What GET Object acl answers: the object's own grants, or the bucket's default."""
    if own is not None:
        return own
    return canned_grants(bucket_canned, owner) or []


def acl_body(grants: Grants, owner: str) -> bytes:
    def grantee(who: str) -> dict[str, Any]:
        kind, _, value = who.partition(":")
        if kind == "uri":
            return {"@xmlns:xsi": _XSI, "@xsi:type": "Group", "URI": value}
        return {"@xmlns:xsi": _XSI, "@xsi:type": "CanonicalUser", "ID": value, "DisplayName": value}

    doc = {
        "AccessControlPolicy": {
            "Owner": {"ID": owner, "DisplayName": owner},
            "AccessControlList": {"Grant": [{"Grantee": grantee(g), "Permission": p} for g, p in grants]},
        }
    }
    return str(xmltodict.unparse(doc)).encode("utf-8")

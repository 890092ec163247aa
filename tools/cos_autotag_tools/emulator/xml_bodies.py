"""XML bodies: what COS answers, and parsing the XML COS accepts.

Answers are built with `xmltodict.unparse` from dicts in document order. The SDK only parses a
body whose Content-Type is exactly `application/xml`, so every XML answer uses `XML_CONTENT_TYPE`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import xmltodict

from cos_autotag_tools import cos_facts

from .errors import CosError

XML_CONTENT_TYPE = "application/xml"
# Characters XML 1.0 cannot carry even escaped; COS keys may contain them, so they are percent-encoded.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> Any:
    """Each leaf as XML character data; dicts and lists are walked."""
    if isinstance(value, Mapping):
        return {name: _text(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_text(item) for item in value]
    return _XML_INVALID.sub(lambda m: quote(m.group(0)), str(value))


def xml_body(root: str, content: Mapping[str, Any]) -> bytes:
    """`<root>` holding `content` (a list value repeats its element), with the XML declaration."""
    return xmltodict.unparse({root: _text(content) or ""}, encoding="UTF-8").encode()


def element(name: str, value: object) -> str:
    """One element as text, for bodies still built by hand elsewhere."""
    return xmltodict.unparse({name: _text(value)}, full_document=False)


def error_body(code: str, message: str, resource: str, request_id: str, trace_id: str) -> bytes:
    """COS's error document. All of Code, Message, Resource and RequestId must be present and
    non-empty, or the SDK's CosServiceError getters all answer "Unknown"."""
    return xml_body(
        "Error",
        {
            "Code": code,
            "Message": message or code,
            "Resource": resource or "/",
            "RequestId": request_id,
            "TraceId": trace_id,
        },
    )


def tagging_body(tags: Mapping[str, str]) -> bytes:
    return xml_body("Tagging", {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]} if tags else ""})


def copy_result_body(etag: str, last_modified_iso: str) -> bytes:
    return xml_body("CopyObjectResult", {"ETag": etag, "LastModified": last_modified_iso})


def initiate_multipart_body(bucket: str, key: str, upload_id: str) -> bytes:
    return xml_body("InitiateMultipartUploadResult", {"Bucket": bucket, "Key": key, "UploadId": upload_id})


def complete_multipart_body(location: str, bucket: str, key: str, etag: str) -> bytes:
    content = {"Location": location, "Bucket": bucket, "Key": key, "ETag": etag}
    return xml_body("CompleteMultipartUploadResult", content)


def post_response_body(location: str, bucket: str, key: str, etag: str) -> bytes:
    return xml_body("PostResponse", {"Location": location, "Bucket": bucket, "Key": key, "ETag": etag})


@dataclass(frozen=True)
class ListedObject:
    key: str
    last_modified_iso: str
    etag: str
    size: int
    storage_class: str


def list_bucket_body(
    *,
    bucket: str,
    prefix: str,
    marker: str,
    max_keys: int,
    delimiter: str,
    url_encode: bool,
    is_truncated: bool,
    next_marker: str,
    contents: Sequence[ListedObject],
    common_prefixes: Sequence[str],
    owner_id: str,
) -> bytes:
    """ListBucketResult. With `encoding-type=url` (the SDK always asks for it) keys, prefixes and
    markers are percent-encoded, and the SDK decodes them."""

    def enc(text: str) -> str:
        return quote(text, safe="/") if url_encode else text

    out: dict[str, Any] = {"Name": bucket}
    if url_encode:
        out["EncodingType"] = "url"
    out.update(Prefix=enc(prefix), Marker=enc(marker), MaxKeys=max_keys)
    if delimiter:
        out["Delimiter"] = enc(delimiter)
    out["IsTruncated"] = "true" if is_truncated else "false"
    if is_truncated and next_marker:
        out["NextMarker"] = enc(next_marker)
    owner = {"ID": owner_id, "DisplayName": owner_id}
    out["Contents"] = [
        {
            "Key": enc(obj.key),
            "LastModified": obj.last_modified_iso,
            "ETag": obj.etag,
            "Size": obj.size,
            "Owner": owner,
            "StorageClass": obj.storage_class,
        }
        for obj in contents
    ]
    out["CommonPrefixes"] = [{"Prefix": enc(common)} for common in common_prefixes]
    return xml_body("ListBucketResult", out)


def detect_label_body(
    labels_by_scene: Mapping[str, Sequence[Mapping[str, object]]], scenes: Sequence[str] | None
) -> bytes:
    """CI's RecognitionResult. Without `scenes` the labels sit in top-level `<Labels>` elements;
    with `scenes` each requested scene gets its own `<XxxLabels>` element holding `<Labels>`."""

    def labels(scene: str) -> dict[str, Any]:
        fields = ("Confidence", "Name", "FirstCategory", "SecondCategory")
        return {"Labels": [{f: label.get(f, "") for f in fields} for label in labels_by_scene.get(scene, ())]}

    if scenes is None:
        # The default scene is camera; its labels are answered unwrapped.
        return xml_body("RecognitionResult", labels(cos_facts.DETECT_DEFAULT_SCENES[0]))
    return xml_body(
        "RecognitionResult", {cos_facts.DETECT_SCENE_ELEMENTS[scene]: labels(scene) or "" for scene in scenes}
    )


# --- parsing ------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    """An element name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def parse_xml(body: bytes, root_name: str) -> ET.Element:
    """Parse a request body whose root must be `root_name`; anything else is MalformedXML."""
    if not body.strip():
        raise CosError("MalformedXML", "The request body is empty")
    # A DTD has no business in a COS request and is how entity-expansion attacks start.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise CosError("MalformedXML", "DTDs are not allowed in the request body")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise CosError("MalformedXML", f"The XML you provided was not well-formed: {exc}") from exc
    if _local(root.tag) != root_name:
        raise CosError("MalformedXML", f"The root element must be <{root_name}>, not <{_local(root.tag)}>")
    return root


def children(node: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in node if _local(child.tag) == name]


def child_text(node: ET.Element, name: str) -> str | None:
    """Text of the first child called `name`: None when absent, "" when empty."""
    found = children(node, name)
    if not found:
        return None
    return found[0].text or ""


def parse_tagging(body: bytes) -> list[tuple[str, str]]:
    """The (key, value) pairs of a `<Tagging><TagSet><Tag>...` body, in order; not yet validated."""
    root = parse_xml(body, "Tagging")
    tag_sets = children(root, "TagSet")
    if len(tag_sets) != 1:
        raise CosError("MalformedXML", "<Tagging> must hold exactly one <TagSet>")
    pairs: list[tuple[str, str]] = []
    for tag in children(tag_sets[0], "Tag"):
        key, value = child_text(tag, "Key"), child_text(tag, "Value")
        if key is None or value is None:
            raise CosError("MalformedXML", "every <Tag> needs a <Key> and a <Value>")
        pairs.append((key, value))
    return pairs


def parse_complete_multipart(body: bytes) -> list[tuple[int, str]]:
    """(part number, ETag) pairs of a CompleteMultipartUpload body, in the order given."""
    root = parse_xml(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for part in children(root, "Part"):
        number, etag = child_text(part, "PartNumber"), child_text(part, "ETag")
        if number is None or etag is None:
            raise CosError("MalformedXML", "every <Part> needs a <PartNumber> and an <ETag>")
        try:
            parts.append((int(number), etag.strip()))
        except ValueError as exc:
            raise CosError("MalformedXML", f"<PartNumber> is not a number: {number!r}") from exc
    if not parts:
        raise CosError("MalformedXML", "<CompleteMultipartUpload> lists no <Part>")
    return parts


def parse_delete(body: bytes) -> tuple[bool, list[str]]:
    """(quiet, keys) of a DeleteMultipleObjects `<Delete><Quiet/><Object><Key/></Object>...` body."""
    root = parse_xml(body, "Delete")
    quiet_text = (child_text(root, "Quiet") or "false").strip().lower()
    if quiet_text not in ("true", "false"):
        raise CosError("MalformedXML", f"<Quiet> must be true or false, not {quiet_text!r}")
    keys: list[str] = []
    for obj in children(root, "Object"):
        key = child_text(obj, "Key")
        if not key:
            raise CosError("MalformedXML", "every <Object> needs a non-empty <Key>")
        keys.append(key)
    if not keys:
        raise CosError("MalformedXML", "<Delete> lists no <Object>")
    if len(keys) > cos_facts.DELETE_MULTIPLE_MAX_KEYS:
        most = cos_facts.DELETE_MULTIPLE_MAX_KEYS
        raise CosError("MalformedXML", f"{len(keys)} objects listed; one request deletes at most {most}")
    return quiet_text == "true", keys


def delete_result_body(deleted: Iterable[str], errors: Iterable[tuple[str, str, str]]) -> bytes:
    """`<DeleteResult>`: a `<Deleted>` per key removed (none when quiet), an `<Error>` per failure."""
    return xml_body(
        "DeleteResult",
        {
            "Deleted": [{"Key": key} for key in deleted],
            "Error": [{"Key": key, "Code": code, "Message": message} for key, code, message in errors],
        },
    )

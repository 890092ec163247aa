"""Facts about COS, Cloud Infinite and SCF that the function relies on, in one place.

Every limit, event name, region code and error code the function uses lives here. The facts
only the local tooling needs (the emulator, deploy checks, the backfill's SCF calls, prices)
live in `cos_autotag_tools.cos_facts`, which imports these and never the reverse.
Sources are Tencent's docs as collected in the project's reference notes; where the docs
disagree, the stricter value is kept so that what we send is accepted either way.
"""

from __future__ import annotations

import re

# --- SCF COS trigger events -------------------------------------------------------------

EVENT_CREATED_PREFIX = "cos:ObjectCreated:"
EVENT_COPY = "cos:ObjectCreated:Copy"  # the metadata mode's own write fires this

# --- Regions -------------------------------------------------------------------------------

# `cosBucket.region` in a trigger event is a short code; COS endpoints need the full name.
REGION_SHORT_CODES: dict[str, str] = {
    "bj": "ap-beijing",
    "tj": "ap-beijing-1",
    "sh": "ap-shanghai",
    "gz": "ap-guangzhou",
    "cd": "ap-chengdu",
    "cq": "ap-chongqing",
    "nj": "ap-nanjing",
    "hk": "ap-hongkong",
    "sgp": "ap-singapore",
    "sg": "ap-singapore",
    "tokyo": "ap-tokyo",
    "jkt": "ap-jakarta",
    "seoul": "ap-seoul",
    "bangkok": "ap-bangkok",
    "mumbai": "ap-mumbai",
    "ca": "na-toronto",
    "ger": "eu-frankfurt",
    "fra": "eu-frankfurt",
    "siliconvalley": "na-siliconvalley",
    "ashburn": "na-ashburn",
    "saopaulo": "sa-saopaulo",
    "szfsi": "ap-shenzhen-fsi",
    "shfsi": "ap-shanghai-fsi",
    "bjfsi": "ap-beijing-fsi",
}
# A full region name: ap-guangzhou, na-siliconvalley, ap-shenzhen-fsi, ap-beijing-1 ...
REGION_RE = re.compile(r"^[a-z]{2,4}-[a-z]+(?:-[a-z0-9]+)?$")

# --- Buckets and endpoints ----------------------------------------------------------------

# A full bucket name is `<name>-<appid>`; the name part is 1-50 lowercase letters, digits and '-'.
BUCKET_RE = re.compile(r"^(?P<name>[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?)-(?P<appid>\d{5,12})$")
# Virtual-host style COS host: <bucket>.cos.<region>.myqcloud.com
COS_HOST_RE = re.compile(
    r"^(?P<bucket>[a-z0-9-]+-\d{5,12})\.cos\.(?P<region>[a-z0-9-]+)\.(?:myqcloud\.com|tencentcos\.cn)$"
)
COS_DOMAIN = "myqcloud.com"


def cos_host(bucket: str, region: str) -> str:
    """The virtual-host name COS serves a bucket on."""
    return f"{bucket}.cos.{region}.{COS_DOMAIN}"


# --- Object keys ------------------------------------------------------------------------------

KEY_MAX_BYTES = 850  # COS: object key at most 850 bytes of UTF-8

# --- Object tags ------------------------------------------------------------------------------

TAGS_MAX_PER_OBJECT = 10
# The API page says key <= 128 and value <= 256; the overview says 1-127 and 1-255.
TAG_KEY_MAX_CHARS = 127
# Letters (the overview allows UTF-8), digits, space and + - _ = . : / @.
TAG_ALLOWED_PUNCTUATION = frozenset(" +-_=.:/@")
# One character outside that rule: neither alphanumeric (`str.isalnum`) nor allowed punctuation.
# `\w` is exactly `str.isalnum` plus `_`, which the punctuation allows too. One C-level search per
# text instead of a Python step per character.
TAG_REFUSED_CHARACTER = re.compile("[^\\w" + re.escape("".join(sorted(TAG_ALLOWED_PUNCTUATION))) + "]")


# The API page's reading (436/42997): ASCII letters, digits, space and + - _ = . : / only, the
# key under 128 bytes. Text within both readings is accepted whichever one COS applies.
TAG_STRICT_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 +-_=.:/")
TAG_KEY_MAX_BYTES = 127
# What COS answers (400) to a tag set its rule refuses.
CODE_INVALID_TAG = "InvalidTag"


def tag_text_is_valid(text: str, max_chars: int) -> bool:
    """True when COS accepts `text` as a tag key or value under its length and character rules."""
    if not 1 <= len(text) <= max_chars:
        return False
    return TAG_REFUSED_CHARACTER.search(text) is None


# --- Object metadata --------------------------------------------------------------------------

USER_META_PREFIX = "x-cos-meta-"
USER_META_MAX_BYTES = 2 * 1024  # all x-cos-meta-* names and values together
# Standard headers a metadata rewrite (copy onto itself with Replaced) must carry over.
PRESERVED_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)
STORAGE_CLASS_HEADER = "x-cos-storage-class"
DEFAULT_STORAGE_CLASS = "STANDARD"
# PUT Object - Copy (436/10881): what the copy does not send, the new object does not get. No
# encryption header stores it unencrypted; no ACL header gives it the bucket's ACL. HEAD answers
# the encryption (SSE-COS `AES256`, SSE-KMS `cos/kms` with its key id); the object's own ACL
# needs GET Object acl (`GET /<key>?acl`, CAM cos:GetObjectACL), which answers the effective one.
SSE_HEADER = "x-cos-server-side-encryption"
SSE_KMS_HEADERS = ("x-cos-server-side-encryption-cos-kms-key-id", "x-cos-server-side-encryption-context")
SSE_ALGORITHMS = ("AES256", "cos/kms")
# SSE-C: the key is the uploader's; a copy must send it, and the function never has it.
SSE_CUSTOMER_HEADER = "x-cos-server-side-encryption-customer-algorithm"
# One x-cos-grant-* header per ACL permission; the SDK has keywords for only some of them, so the
# copy sends them all as raw headers (through `Metadata=`, whose keys the SDK sends verbatim).
GRANT_HEADERS = {
    "READ": "x-cos-grant-read",
    "WRITE": "x-cos-grant-write",
    "READ_ACP": "x-cos-grant-read-acp",
    "WRITE_ACP": "x-cos-grant-write-acp",
    "FULL_CONTROL": "x-cos-grant-full-control",
}

# --- Cloud Infinite detect-label --------------------------------------------------------------

DETECT_SCENES = ("web", "camera", "album", "news")
DETECT_DEFAULT_SCENES = ("camera",)
DETECT_MAX_BYTES = 3 * 1024 * 1024
DETECT_MIN_SIDE = 50  # the international rules page says larger than 50x50; stricter than 32x32
# Cloud Infinite renders (thumbnails) images up to this size; beyond it nothing can be labeled.
CI_PROCESS_MAX_BYTES = 32 * 1024 * 1024
DETECT_CONTENT_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png"})
DETECT_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
# Types that say nothing about the content: decide from the extension or the bytes instead.
GENERIC_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

# Error codes that mean "too many requests, try again": CI's own and COS's.
THROTTLE_CODES = frozenset({"-164", "-29214", "1020", "SlowDown", "RequestLimitExceeded"})
# Codes that mean the object cannot be labeled and a retry will not change that.
NOT_AN_IMAGE_CODES = frozenset({"InvalidImageFormat", "-1101", "-1102", "-1103"})

# What detect-label answers for inputs it rejects. The first three are on COS's error-code page;
# the code for an image under DETECT_MIN_SIDE is not documented anywhere we found (unverified).
CI_CODE_NOT_AN_IMAGE = "InvalidImageFormat"
CI_CODE_IMAGE_TOO_LARGE = "ImageTooLarge"
CI_CODE_RESOLUTION_EXCEEDED = "ImageResolutionExceed"
CI_CODE_IMAGE_TOO_SMALL = "InvalidArgument"
CI_CODE_BAD_IMAGE_SOURCE = "InvalidImageSource"
# --- SCF ---------------------------------------------------------------------------------------

SCF_TIMEOUT_MAX_S = 900  # the longest an invocation can run


# --- errors whose fix is in the deployment, not in one object ----------------------------------
# A first deploy that names the wrong bucket or region, or whose role lacks a permission, or
# whose bucket is not bound to Cloud Infinite, answers the same error for every upload. These
# are told apart from properties of one object (gone, not an image) so the user sees what to fix.
CREDENTIAL_ERROR_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "RequestTimeTooSkewed"}
)
# detect-label's answers about the image itself: a property of that one object, so a skip.
IMAGE_REJECTION_CODES = frozenset(
    {CI_CODE_NOT_AN_IMAGE, CI_CODE_IMAGE_TOO_LARGE, CI_CODE_RESOLUTION_EXCEEDED, CI_CODE_IMAGE_TOO_SMALL}
    | NOT_AN_IMAGE_CODES
)


def configuration_fix(operation: str, code: str, status: int | None) -> str | None:
    """What to fix when an error says the deployment is wrong (None: it is about this object or transient).

    Cloud Infinite documents no code for "bucket not bound" or "recognition not enabled", so any
    detect-label 4xx that is not about the image, the object's absence or throttling counts here.
    """
    if code == "NoSuchBucket":
        return (
            "COS has no such bucket in that region (NoSuchBucket): check the bucket name (<name>-<appid>) "
            "and its region in the trigger, AUTOTAG_BUCKETS and the function's region"
        )
    if code in CREDENTIAL_ERROR_CODES:
        return (
            f"COS refused the credentials ({code}): on SCF, bind an execution role to the function "
            "(it provides TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY and TENCENTCLOUD_SESSIONTOKEN); "
            "locally, check those variables"
        )
    if operation == "PutObjectTagging" and code == CODE_INVALID_TAG:
        return (
            "COS refused the label tags (InvalidTag): this COS may apply its API page's strict tag rule "
            "(ASCII letters, digits, space and + - _ = . : / only), which refuses labels in other scripts "
            "as written with AUTOTAG_TAG_TEXT=utf8: set AUTOTAG_TAG_TEXT=auto or ascii-safe to write them "
            "in the encoded form (autotag:b64:...), which `cos-autotag show` and `find` read back"
        )
    if operation == "DetectLabel":
        if code == "UnreadableReply":
            # A 200 that is not detect-label's XML: what an unbound bucket may answer (an HTML or
            # JSON page; undocumented), or a garbled reply. Neither is the photo's fault.
            return (
                "detect-label answered 200 with something that is not its XML result: a bucket not bound to "
                "Cloud Infinite can answer so. Run `cos-autotag check` to see the bucket's Cloud Infinite status; "
                "bind the bucket to Cloud Infinite and enable AI content recognition for it (see docs/deploy.md)"
            )
        if status == 404 and code != "NoSuchKey":
            pass  # an unbound bucket may answer 404 with its own code; only NoSuchKey is "object gone"
        elif status is None or status == 404 or status == 429 or status >= 500:
            return None
        if code in IMAGE_REJECTION_CODES or code in THROTTLE_CODES:
            return None
        if code == CI_CODE_BAD_IMAGE_SOURCE:
            return (
                f"Cloud Infinite could not fetch the image ({code}): the role must be able to read the "
                "object (cos:GetObject), including through the signed rendition URL used for large photos"
            )
        return (
            f"Cloud Infinite refused detect-label ({code}): bind the bucket to Cloud Infinite, enable AI "
            "content recognition for it, and allow the role ci:CreateDetectLabelJob (see docs/deploy.md)"
        )
    if code == "AccessDenied" or (status == 403 and code != "InvalidObjectState"):  # archived: one object
        return (
            f"the function's role may not call {operation} on this bucket ({code}): attach the policy that "
            "`cos-autotag policy` prints for this mode to the SCF execution role"
        )
    return None

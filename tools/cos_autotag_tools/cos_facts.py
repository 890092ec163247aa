"""Facts about COS, Cloud Infinite and SCF that only the local tooling needs, in one place.

The function's own facts are in `cos_autotag.cos_facts`; they are imported here, so the tools
and the tests read every fact from this one module. Sources as there.
"""

from __future__ import annotations

import re

from cos_autotag.cos_facts import *  # noqa: F403  (the function's facts, each stated once there)
from cos_autotag.cos_facts import CI_CODE_BAD_IMAGE_SOURCE, EVENT_COPY, REGION_SHORT_CODES

# --- SCF COS trigger events -------------------------------------------------------------

EVENT_REMOVE_PREFIX = "cos:ObjectRemove:"

EVENT_CREATED_ANY = "cos:ObjectCreated:*"
EVENT_PUT = "cos:ObjectCreated:Put"
EVENT_POST = "cos:ObjectCreated:Post"
EVENT_COMPLETE_MULTIPART = "cos:ObjectCreated:CompleteMultipartUpload"
EVENT_ORIGIN = "cos:ObjectCreated:Origin"
EVENT_REPLICATION = "cos:ObjectCreated:Replication"

CREATED_EVENTS = (
    EVENT_PUT,
    EVENT_POST,
    EVENT_COPY,
    EVENT_COMPLETE_MULTIPART,
    EVENT_ORIGIN,
    EVENT_REPLICATION,
)

# What a `cos` trigger in serverless.yml may subscribe to (the scf component's input rules).
TRIGGER_EVENT_NAMES = (
    EVENT_CREATED_ANY,
    *CREATED_EVENTS,
    "cos:ObjectRemove:*",
    "cos:ObjectRemove:Delete",
    "cos:ObjectRemove:DeleteMarkerCreated",
    "cos:ObjectRestore:Post",
    "cos:ObjectRestore:Completed",
)

# SCF's async invocation retries a handler that raised this many times by default.
SCF_DEFAULT_RETRY_NUM = 2
# Largest event SCF accepts for an asynchronous invocation.
SCF_ASYNC_EVENT_MAX_BYTES = 128 * 1024


# --- Buckets, keys, tags -------------------------------------------------------------------

APPID_RE = re.compile(r"^\d{5,12}$")

# One PUT Object (or one part) carries at most 5 GB; beyond it COS answers 400 EntityTooLarge.
PUT_MAX_BYTES = 5 * 1024**3
# DeleteMultipleObjects (POST /?delete) takes at most this many keys per request.
DELETE_MULTIPLE_MAX_KEYS = 1000

# The API page says key <= 128 and value <= 256; the overview says 1-127 and 1-255 (the
# function's own key limit, TAG_KEY_MAX_CHARS, follows the same stricter reading).
TAG_VALUE_MAX_CHARS = 255

# --- Cloud Infinite detect-label --------------------------------------------------------------

DETECT_MAX_WIDTH, DETECT_MAX_HEIGHT = 7680, 4320

# Price per detect-label call in USD, by monthly volume tier (upper bound of calls, price per 1,000).
DETECT_PRICE_TIERS_USD_PER_1000 = (
    (3_000_000, 1.50),
    (15_000_000, 1.35),
    (30_000_000, 1.30),
    (None, 1.10),
)


def detect_cost_usd(calls: int) -> float:
    """What `calls` detect-label calls cost in one month at Cloud Infinite's public tiered price."""
    cost, done = 0.0, 0
    for upper, price in DETECT_PRICE_TIERS_USD_PER_1000:
        in_tier = calls - done if upper is None else max(0, min(calls, upper) - done)
        cost += in_tier * price / 1000
        done += in_tier
        if done >= calls:
            break
    return round(cost, 4)


def region_short_code(region: str) -> str:
    """The short code SCF puts in `cosBucket.region` for a full region name (first match wins)."""
    for short, full in REGION_SHORT_CODES.items():
        if full == region:
            return short
    return region


# --- COS error responses --------------------------------------------------------------------
# HTTP status of each COS error code the project produces or handles (COS API error-code page).

COS_ERROR_STATUS: dict[str, int] = {
    "BadDigest": 400,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "ImageResolutionExceed": 400,
    "ImageTooLarge": 400,
    "InvalidArgument": 400,
    "InvalidCopySource": 400,
    "InvalidDigest": 400,
    "InvalidImageFormat": 400,
    "InvalidImageSource": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidPolicyDocument": 400,
    "InvalidRequest": 400,
    "InvalidTag": 400,  # bad tag key/value, more than TAGS_MAX_PER_OBJECT tags, duplicate keys
    "InvalidURI": 400,
    "KeyTooLong": 400,
    "MalformedPOSTRequest": 400,
    "MalformedXML": 400,
    "NotSupportedStorageClass": 400,
    "AccessDenied": 403,  # also "Request has expired" (the message) for an expired signature
    "InvalidAccessKeyId": 403,
    "InvalidObjectState": 403,  # e.g. reading an ARCHIVE object
    "SignatureDoesNotMatch": 403,
    "NoSuchBucket": 404,
    "NoSuchCopySource": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "MethodNotAllowed": 405,
    "PreconditionFailed": 412,
    "InvalidRange": 416,
    "InternalError": 500,
    "NotImplemented": 501,
    "ServiceUnavailable": 503,
    "SlowDown": 503,
}

STORAGE_CLASSES = frozenset(
    {
        "STANDARD",
        "STANDARD_IA",
        "INTELLIGENT_TIERING",
        "ARCHIVE",
        "DEEP_ARCHIVE",
        "MAZ_STANDARD",
        "MAZ_STANDARD_IA",
        "MAZ_INTELLIGENT_TIERING",
    }
)
# Objects in these classes must be restored before they can be read (403 InvalidObjectState).
ARCHIVE_STORAGE_CLASSES = frozenset({"ARCHIVE", "DEEP_ARCHIVE"})

# Multipart upload: every part but the last must be at least 1 MB (the SDK's complete_multipart_upload doc).
MULTIPART_MIN_PART_BYTES = 1024 * 1024


# What detect-label answers when Cloud Infinite cannot fetch its detect-url (unsigned on a private
# bucket, expired, a bad signature, another bucket). UNVERIFIED: the docs do not say; the emulator
# answers the COS error page's image-source error.
CI_CODE_DETECT_URL_UNREADABLE = CI_CODE_BAD_IMAGE_SOURCE
CI_THROTTLE_MESSAGE = "The request frequency is too high"

# detect-label's `scenes` values and the response element each one fills.
DETECT_SCENE_ELEMENTS: dict[str, str] = {
    "web": "WebLabels",
    "camera": "CameraLabels",
    "album": "AlbumLabels",
    "news": "NewsLabels",
}


# --- SCF deploy-time limits -------------------------------------------------------------------
# From SCF's CreateFunction API and quota page; the deployment files are checked against these.

# Python runtimes CreateFunction accepts (no 3.11 or 3.12 yet).
SCF_PYTHON_RUNTIMES = ("Python2.7", "Python3.6", "Python3.7", "Python3.9", "Python3.10")
SCF_MEMORY_MIN_MB, SCF_MEMORY_MAX_MB = 64, 3072  # 64, or a multiple of 128 up to the max
SCF_MEMORY_STEP_MB = 128
SCF_TIMEOUT_MIN_S = 1
SCF_FUNCTION_NAME_MAX_CHARS = 60
SCF_ENV_MAX_BYTES = 4 * 1024  # all of a function's environment variables together
SCF_RESERVED_ENV_PREFIXES = ("SCF_", "QCLOUD_", "TENCENTCLOUD_")
SCF_LAYERS_PER_FUNCTION_MAX = 5
SCF_TRIGGERS_PER_TYPE_MAX = 10
SCF_CODE_UNZIPPED_MAX_BYTES = 500 * 1024 * 1024  # function code plus all its layers
SCF_ZIP_UPLOAD_MAX_BYTES = 50 * 1024 * 1024

# --- SCF's cloud API (Tencent Cloud API 3.0), used by `backfill --via-scf` -------------------------
# From tencentcloud-sdk-python-scf (scf_client.py, models.py) and API 3.0's signature page.

# API 3.0 answers this (and codes under it) when calls come too fast: worth a later retry.
API_THROTTLE_CODE = "RequestLimitExceeded"

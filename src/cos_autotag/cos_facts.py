"""Facts about COS, Cloud Infinite and SCF, in one place.

Every limit, event name, region code and error code the project relies on lives here
and is imported elsewhere (the function, the local emulator and the tests alike).
Sources are Tencent's docs as collected in the project's reference notes; where the docs
disagree, the stricter value is kept so that what we send is accepted either way.
"""

from __future__ import annotations

import re

# --- SCF COS trigger events -------------------------------------------------------------

EVENT_CREATED_PREFIX = "cos:ObjectCreated:"
EVENT_REMOVE_PREFIX = "cos:ObjectRemove:"
EVENT_RESTORE_PREFIX = "cos:ObjectRestore:"

EVENT_CREATED_ANY = "cos:ObjectCreated:*"
EVENT_PUT = "cos:ObjectCreated:Put"
EVENT_POST = "cos:ObjectCreated:Post"
EVENT_COPY = "cos:ObjectCreated:Copy"
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

APPID_RE = re.compile(r"^\d{5,12}$")
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
TAG_VALUE_MAX_CHARS = 255
# Letters (the overview allows UTF-8), digits, space and + - _ = . : / @.
TAG_ALLOWED_PUNCTUATION = frozenset(" +-_=.:/@")


def tag_text_is_valid(text: str, max_chars: int) -> bool:
    """True when COS accepts `text` as a tag key or value under its length and character rules."""
    if not 1 <= len(text) <= max_chars:
        return False
    return all(ch.isalnum() or ch in TAG_ALLOWED_PUNCTUATION for ch in text)


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

# --- Cloud Infinite detect-label --------------------------------------------------------------

DETECT_SCENES = ("web", "camera", "album", "news")
DETECT_DEFAULT_SCENES = ("camera",)
DETECT_MAX_BYTES = 3 * 1024 * 1024
DETECT_MIN_SIDE = 50  # the international rules page says larger than 50x50; stricter than 32x32
DETECT_MAX_WIDTH, DETECT_MAX_HEIGHT = 7680, 4320
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

# What detect-label answers for inputs it rejects. The first three are on COS's error-code page;
# the code for an image under DETECT_MIN_SIDE is not documented anywhere we found (unverified).
CI_CODE_NOT_AN_IMAGE = "InvalidImageFormat"
CI_CODE_IMAGE_TOO_LARGE = "ImageTooLarge"
CI_CODE_RESOLUTION_EXCEEDED = "ImageResolutionExceed"
CI_CODE_IMAGE_TOO_SMALL = "InvalidArgument"
CI_CODE_BAD_IMAGE_SOURCE = "InvalidImageSource"
CI_THROTTLE_MESSAGE = "The request frequency is too high"
# What detect-label answers on a bucket that is not bound to Cloud Infinite, or whose AI content
# recognition service is not enabled. UNVERIFIED: Tencent's docs name the requirement but not the
# error; this code, status and message are the emulator's stand-in. The function must not rely on
# the code: any non-image 4xx from detect-label is a configuration error.
CI_CODE_NOT_BOUND = "CINotEnabled"
CI_STATUS_NOT_BOUND = 403
CI_MESSAGE_NOT_BOUND = (
    "Cloud Infinite is not enabled for this bucket: bind the bucket to Cloud Infinite and enable "
    "AI content recognition before calling detect-label"
)

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
SCF_TIMEOUT_MIN_S, SCF_TIMEOUT_MAX_S = 1, 900
SCF_FUNCTION_NAME_MAX_CHARS = 60
SCF_ENV_MAX_BYTES = 4 * 1024  # all of a function's environment variables together
SCF_RESERVED_ENV_PREFIXES = ("SCF_", "QCLOUD_", "TENCENTCLOUD_")
SCF_LAYERS_PER_FUNCTION_MAX = 5
SCF_TRIGGERS_PER_TYPE_MAX = 10
SCF_CODE_UNZIPPED_MAX_BYTES = 500 * 1024 * 1024  # function code plus all its layers
SCF_ZIP_UPLOAD_MAX_BYTES = 50 * 1024 * 1024
SCF_LAYER_ROOT = "/opt"  # layers unzip here; SCF's PYTHONPATH includes it

# --- SCF's cloud API (Tencent Cloud API 3.0), used by `backfill --via-scf` -------------------------
# From tencentcloud-sdk-python-scf (scf_client.py, models.py) and API 3.0's signature page.

SCF_API_SERVICE = "scf"  # the service in the TC3 credential scope <date>/scf/tc3_request
SCF_API_VERSION = "2018-04-16"  # X-TC-Version
TC3_MAX_CLOCK_SKEW_S = 300  # X-TC-Timestamp more than 5 minutes off: AuthFailure.SignatureExpire
SCF_SYNC_EVENT_MAX_BYTES = 6 * 1024 * 1024  # InvokeRequest.ClientContext, synchronous (async: above)
# API 3.0 answers this (and codes under it) when calls come too fast: worth a later retry.
API_THROTTLE_CODE = "RequestLimitExceeded"

"""`cos-autotag gallery --demo`: the demo's photos, labeled by the real handler, in the gallery.

As `cos-autotag demo` does: a local COS + Cloud Infinite emulator with the offline EfficientNet
engine, the photos that ship with the package uploaded through the unmodified SDK, and the
emulator's COS trigger running `index.main_handler`. The gallery then reads that bucket like any
other, through AUTOTAG_COS_ENDPOINT.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager

DEMO_BUCKET = "demo-1250000000"
DEMO_REGION = "ap-guangzhou"
UPLOADER_ID = "AKIDdemouploader"
FUNCTION_ID = "AKIDdemofunction"
READER_ID = "AKIDdemogallery"
# ImageNet probabilities spread over near-synonyms: the demo's threshold (see demo.py).
DEMO_MIN_CONFIDENCE = "20"


@contextmanager
def demo_bucket() -> Iterator[dict[str, str]]:
    """Serve the labeled demo bucket while the block runs; yield the gallery's environment."""
    from qcloud_cos import CosConfig, CosS3Client

    from cos_autotag import handler as handler_module

    from ..emulator import Emulator
    from ..function_env import function_environment
    from ..labels import EfficientNetEngine
    from ..photos import list_photos

    print("Loading the offline label engine (EfficientNet-Lite0, numpy) ...", file=sys.stderr, flush=True)
    keys = {UPLOADER_ID: secrets.token_hex(16), FUNCTION_ID: secrets.token_hex(16), READER_ID: secrets.token_hex(16)}
    emu = Emulator(credentials=keys, label_engine=EfficientNetEngine())
    emu.start()
    # The handler reads its settings and role credentials from the process environment, as on SCF.
    function_env = {
        "TENCENTCLOUD_SECRETID": FUNCTION_ID,
        "TENCENTCLOUD_SECRETKEY": keys[FUNCTION_ID],
        "AUTOTAG_COS_ENDPOINT": emu.endpoint,
        "AUTOTAG_MIN_CONFIDENCE": os.environ.get("AUTOTAG_MIN_CONFIDENCE", DEMO_MIN_CONFIDENCE),
        "AUTOTAG_LOG_LEVEL": "WARNING",
    }
    try:
        with function_environment(function_env):
            emu.create_bucket(DEMO_BUCKET, DEMO_REGION)
            emu.add_trigger(DEMO_BUCKET, handler_module.main_handler, time_limit_ms=30000)
            uploader = CosS3Client(CosConfig(**emu.sdk_config(DEMO_REGION, secret_id=UPLOADER_ID)), retry=0)
            photos = list_photos()
            for photo in photos:
                content_type = "image/png" if photo.suffix == ".png" else "image/jpeg"
                uploader.put_object(
                    Bucket=DEMO_BUCKET, Key=f"photos/{photo.name}", Body=photo.read_bytes(), ContentType=content_type
                )
            print(f"Uploaded {len(photos)} photos to {emu.endpoint}; the function labels them ...", file=sys.stderr)
            emu.wait_idle(300)
            failed = [run for run in emu.invocations if run.outcome != "ok"]
            if failed:
                print(f"  {len(failed)} invocations failed: {failed[0].error}", file=sys.stderr)
            yield {
                "TENCENTCLOUD_SECRETID": READER_ID,
                "TENCENTCLOUD_SECRETKEY": keys[READER_ID],
                "AUTOTAG_COS_ENDPOINT": emu.endpoint,
            }
    finally:
        emu.stop()

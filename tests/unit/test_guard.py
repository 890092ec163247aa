from cos_autotag.events import CosRecord
from cos_autotag.idempotency import idempotency_key, marker_says_done
from cos_autotag.writeback import marker_value

PUT = CosRecord("photos-1250000000", "ap-guangzhou", "a.jpg", "cos:ObjectCreated:Put", upload_request_id="req-1")


def test_no_marker_means_work_to_do():
    assert not marker_says_done(None, PUT)


def test_same_upload_is_a_duplicate():
    assert marker_says_done(marker_value(PUT.upload_token), PUT)


def test_a_newer_upload_of_the_same_key_is_labeled_again():
    newer = PUT._replace(upload_request_id="req-2")
    assert not marker_says_done(marker_value(PUT.upload_token), newer)


def test_a_copy_carrying_a_marker_is_done():
    copy = PUT._replace(event_name="cos:ObjectCreated:Copy", upload_request_id="req-copy")
    assert marker_says_done(marker_value(PUT.upload_token), copy)


def test_backfill_without_identity_trusts_any_marker():
    backfill = PUT._replace(upload_request_id="")
    assert marker_says_done("v1", backfill)
    assert not marker_says_done(None, backfill)


def test_idempotency_key_is_per_upload():
    assert idempotency_key(PUT) != idempotency_key(PUT._replace(upload_request_id="req-2"))
    assert idempotency_key(PUT) == idempotency_key(PUT._replace(size=5))

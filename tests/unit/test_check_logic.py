"""The pure parts of `cos-autotag check`: reading Cloud Infinite's free status answer (its shape
per DescribeAIBuckets 436/50196; tests/integration/test_deploy_check.py parses the emulator's answer)."""

import pytest

from cos_autotag_tools.deploy.check import ai_recognition_status

BUCKET = "photos-1250000000"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"TotalCount": "1", "AiBucketList": {"Name": BUCKET, "Region": "ap-guangzhou"}}, True),
        ({"TotalCount": "2", "AiBucketList": [{"Name": "other-1250000000"}, {"Name": BUCKET}]}, True),
        ({"TotalCount": "0", "PageNumber": "1"}, False),
        ({"TotalCount": "1", "AiBucketList": {"Name": "other-1250000000"}}, None),  # a prefix match, not ours
        ({"Unexpected": "shape"}, None),
        (None, None),
        (b"<Response/>", None),
    ],
)
def test_ai_recognition_status_tells_only_what_the_answer_says(answer, expected):
    assert ai_recognition_status(answer, BUCKET) is expected

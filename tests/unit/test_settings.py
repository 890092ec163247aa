import pytest

from cos_autotag.errors import SettingsError
from cos_autotag.settings import ENV_VARS, Settings


def test_defaults():
    s = Settings.from_env({})
    assert (s.mode, s.scenes, s.max_labels, s.min_confidence) == ("tags", ("camera",), 5, 50)
    assert s.cos_endpoint is None and s.redis_url is None and not s.log_event


def test_values_are_parsed():
    s = Settings.from_env(
        {
            "AUTOTAG_MODE": "Metadata",
            "AUTOTAG_SCENES": "web, camera,web",
            "AUTOTAG_MAX_LABELS": "9",
            "AUTOTAG_MIN_CONFIDENCE": "0",
            "AUTOTAG_LOG_LEVEL": "debug",
            "AUTOTAG_LOG_EVENT": "true",
            "AUTOTAG_COS_ENDPOINT": "http://127.0.0.1:9000",
            "AUTOTAG_INCLUDE_PREFIXES": "photos/,camera/",
            "AUTOTAG_BUCKETS": "photos-1250000000",
            "AUTOTAG_IDEMPOTENCY_REDIS_URL": "redis://:pw@10.0.0.1:6379/0",
        }
    )
    assert s.mode == "metadata" and s.scenes == ("web", "camera") and s.max_labels == 9
    assert s.cos_endpoint == ("http", "127.0.0.1", 9000)
    assert s.include_prefixes == ("photos/", "camera/")
    assert s.buckets == frozenset({"photos-1250000000"})


@pytest.mark.parametrize(
    ("var", "value", "allowed"),
    [
        ("AUTOTAG_MODE", "both", "tags, metadata"),
        ("AUTOTAG_SCENES", "web,street", "web, camera, album, news"),
        ("AUTOTAG_MAX_LABELS", "10", "1 to 9"),
        ("AUTOTAG_MAX_LABELS", "five", "1 to 9"),
        ("AUTOTAG_MIN_CONFIDENCE", "101", "0 to 100"),
        ("AUTOTAG_LOG_LEVEL", "LOUD", "DEBUG"),
        ("AUTOTAG_LOG_EVENT", "maybe", "true or false"),
        ("AUTOTAG_COS_ENDPOINT", "127.0.0.1:9000", "http://HOST:PORT"),
        ("AUTOTAG_COS_ENDPOINT", "http://localhost", "http://HOST:PORT"),
        ("AUTOTAG_BUCKETS", "photos", "<name>-<appid>"),
        ("AUTOTAG_IDEMPOTENCY_REDIS_URL", "http://x", "redis://"),
    ],
)
def test_bad_value_names_variable_value_and_what_is_allowed(var, value, allowed):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: value})
    message = str(info.value)
    assert var in message and repr(value) in message and allowed in message


def test_every_variable_read_is_listed():
    import inspect
    import re

    from cos_autotag import settings

    source = inspect.getsource(settings.Settings.from_env)
    assert set(re.findall(r'"(AUTOTAG_[A-Z_]+)"', source)) == set(ENV_VARS)

import base64
from urllib.parse import quote

import pytest

from cos_autotag.errors import SettingsError
from cos_autotag.settings import ENV_VARS, SETTINGS, Settings, unknown_variables
from cos_autotag_tools.deploy import settings_doc


def test_defaults():
    s = Settings.from_env({})
    assert (s.mode, s.scenes, s.max_labels, s.min_confidence) == ("tags", ("camera",), 5, 50)
    assert s.cos_endpoint is None and s.redis_url is None and not s.log_event


def test_table_defaults_are_the_settings_defaults():
    """The default the docs show is the one the function uses."""
    defaults = Settings()
    for setting in SETTINGS:
        if setting.default:
            assert setting.parse(setting.var, setting.default) == getattr(defaults, setting.attr), setting.var
        else:
            assert getattr(defaults, setting.attr) in (None, (), frozenset()), setting.var


def test_table_covers_every_field_once():
    assert sorted(s.attr for s in SETTINGS) == sorted(Settings._fields)
    assert len(set(ENV_VARS)) == len(ENV_VARS) == len(SETTINGS)
    assert [s.var for s in SETTINGS if s.secret] == ["AUTOTAG_IDEMPOTENCY_REDIS_URL"]


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
            "AUTOTAG_EXCLUDE_SUFFIXES": " .gif , ",
            "AUTOTAG_BUCKETS": "photos-1250000000",
            "AUTOTAG_LARGE_IMAGES": "SKIP",
            "AUTOTAG_IDEMPOTENCY_REDIS_URL": "redis://:pw@10.0.0.1:6379/0",
            "AUTOTAG_IDEMPOTENCY_TTL_SECONDS": "3600",
        }
    )
    assert s.mode == "metadata" and s.scenes == ("web", "camera") and s.max_labels == 9
    assert s.min_confidence == 0 and s.log_level == "DEBUG" and s.log_event
    assert s.cos_endpoint == ("http", "127.0.0.1", 9000)
    assert s.include_prefixes == ("photos/", "camera/") and s.exclude_suffixes == (".gif",)
    assert s.buckets == frozenset({"photos-1250000000"}) and s.large_images == "skip"
    assert s.redis_url == "redis://:pw@10.0.0.1:6379/0" and s.idempotency_ttl_s == 3600


def test_blank_values_mean_the_default():
    assert Settings.from_env({var: "  " for var in ENV_VARS}) == Settings()


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
        ("AUTOTAG_LARGE_IMAGES", "resize", "thumbnail, skip"),
        ("AUTOTAG_IDEMPOTENCY_TTL_SECONDS", "59", "60 to"),
    ],
)
def test_bad_value_names_variable_value_and_what_is_allowed(var, value, allowed):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: value})
    message = str(info.value)
    assert var in message and repr(value) in message and allowed in message
    assert info.value.var == var


PASSWORD = "s3cr3t-Pass-word"


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (f"http://:{PASSWORD}@10.0.0.1:6379/0", "must start with redis://"),
        (f"redis://:{PASSWORD}@10.0.0.1:notaport/0", "port is not a number"),
        (f"redis://:{PASSWORD}@:6379/0", "has no host"),
        (f"{PASSWORD}", "must start with redis://"),
        (f"{PASSWORD}:6379", "must start with redis://"),  # the password would parse as a scheme
        (f"redis//:{quote(PASSWORD, safe='')}@host:6379", "must start with redis://"),
        (f"redis://:{PASSWORD}@[::1:6379/0", "IPv6 host"),
    ],
)
def test_redis_url_errors_never_show_the_password(value, what):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"AUTOTAG_IDEMPOTENCY_REDIS_URL": value})
    message = str(info.value)
    assert "AUTOTAG_IDEMPOTENCY_REDIS_URL" in message and what in message and "redis://" in message
    shown = message + repr(info.value) + repr(info.value.args) + repr(info.value.value)
    secret_forms = {
        PASSWORD,
        "s3cr3t",
        quote(PASSWORD, safe=""),
        quote(PASSWORD),
        repr(PASSWORD)[1:-1],
        base64.b64encode(PASSWORD.encode()).decode()[:12],
        PASSWORD.encode().hex()[:12],
    }
    assert not [form for form in secret_forms if form in shown], message


def test_a_valid_redis_url_is_not_in_the_settings_repr():
    settings = Settings.from_env({"AUTOTAG_IDEMPOTENCY_REDIS_URL": f"redis://:{PASSWORD}@10.0.0.1:6379/0"})
    assert PASSWORD not in repr(settings) and "s3cr3t" not in str(settings)


def test_unknown_variables_name_the_closest_known_one():
    env = {
        "AUTOTAG_MODES": "tags",  # typo
        "AUTOTAG_MIN_CONFIDENCES": "50",
        "AUTOTAG_FROBNICATE": "1",  # nothing close
        "AUTOTAG_MODE": "tags",  # known
        "PATH": "/bin",  # not ours
        "autotag_mode": "x",  # not the prefix (case matters on Linux)
    }
    assert unknown_variables(env) == [
        ("AUTOTAG_FROBNICATE", None),
        ("AUTOTAG_MIN_CONFIDENCES", "AUTOTAG_MIN_CONFIDENCE"),
        ("AUTOTAG_MODES", "AUTOTAG_MODE"),
    ]


def test_unknown_variables_spares_names_other_programs_read():
    env = {"AUTOTAG_SCF_ENDPOINT": "http://127.0.0.1:1", "AUTOTAG_SCENE": "web"}
    assert unknown_variables(env, also_known=("AUTOTAG_SCF_ENDPOINT",)) == [("AUTOTAG_SCENE", "AUTOTAG_SCENES")]
    assert unknown_variables({var: "" for var in ENV_VARS}) == []


# --- the generated docs ---------------------------------------------------------------------


def test_readme_env_example_and_serverless_yml_follow_the_settings_declaration():
    """The one check of every copy: README table and .env.example as generated, serverless.yml's
    environment block with each deployed setting from its own variable."""
    assert settings_doc.drift() == [], "run python -m cos_autotag_tools.deploy.settings_doc"
    text = settings_doc.README.read_text(encoding="utf-8")
    for var in ENV_VARS:
        assert f"| `{var}` |" in text
    assert set(settings_doc.LOCAL_ONLY_SETTINGS) <= set(ENV_VARS), "LOCAL_ONLY_SETTINGS names a setting no longer read"


def test_serverless_yml_drift_names_what_to_change(tmp_path):
    yml = tmp_path / "serverless.yml"
    variables = {
        "AUTOTAG_MODE": "${env:AUTOTAG_MODE}",
        "AUTOTAG_BUCKETS": "${env:AUTOTAG_BUCKETS}",  # serverless.yml fills it from COS_BUCKET
        "AUTOTAG_COS_ENDPOINT": "${env:AUTOTAG_COS_ENDPOINT}",  # local only
    }
    lines = ["inputs:", "  environment:", "    variables:"] + [f"      {k}: {v}" for k, v in variables.items()]
    yml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = settings_doc.serverless_problems(yml)
    assert "AUTOTAG_BUCKETS is '${env:AUTOTAG_BUCKETS}', expected '${env:COS_BUCKET}'" in problems
    assert any(p.startswith("AUTOTAG_COS_ENDPOINT is not a deployed setting") for p in problems)
    assert any(p.startswith("AUTOTAG_SCENES is not set") for p in problems)


def test_generator_check_mode_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    readme, env = tmp_path / "README.md", tmp_path / ".env.example"
    readme.write_text(f"# x\n\n{settings_doc.BEGIN}\n| old |\n{settings_doc.END}\n", encoding="utf-8")
    env.write_text(settings_doc.env_example(), encoding="utf-8")
    monkeypatch.setattr(settings_doc, "README", readme)
    monkeypatch.setattr(settings_doc, "ENV_EXAMPLE", env)
    assert settings_doc.main(["--check"]) == 1
    assert "README.md is stale" in capsys.readouterr().err
    assert settings_doc.main([]) == 0
    assert settings_doc.main(["--check"]) == 0
    assert "| `AUTOTAG_MODE` | `tags` |" in readme.read_text(encoding="utf-8")


def test_generator_refuses_a_readme_without_markers():
    with pytest.raises(ValueError, match="markers"):
        settings_doc.readme_with_table("# no table here\n")


@pytest.mark.parametrize(
    "value",
    [
        f"redis://:{PASSWORD}/x@10.0.0.1:6379/0",  # a / in the password: the last @ ends it
        f"redis://:{PASSWORD}?@10.0.0.1:6379/0",
        f"redis://:acct@{PASSWORD}@10.0.0.1:6379/0",  # Tencent Cloud Redis's account@password form
        f"REDIS://:{PASSWORD}@10.0.0.1:6379/0",
    ],
)
def test_redis_urls_the_store_accepts_are_accepted_here_too(value):
    assert Settings.from_env({"AUTOTAG_IDEMPOTENCY_REDIS_URL": value}).redis_url == value


def test_the_tooling_registers_its_own_variables_so_the_function_beside_it_spares_them():
    import cos_autotag_tools

    assert "AUTOTAG_SCF_ENDPOINT" in cos_autotag_tools.TOOLING_VARIABLES
    assert unknown_variables({"AUTOTAG_SCF_ENDPOINT": "http://127.0.0.1:1"}) == []

"""serverless.yml as the Serverless Components CLI sends it, offline: for `cos-autotag local`'s
trigger and the settings check.

The CLI resolves `${env:X}` locally (dropping the key when X is unset) and the cloud fills in
`${name}`, `${stage}` and `${app}`. The components' input rules, checked offline, are the
tests' (tests/support/deploy_config.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
FUNCTION_YML = ROOT / "serverless.yml"

PLAIN_VARIABLES = frozenset({"name", "stage", "app"})
_ENV_VAR = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml  # PyYAML: a dev dependency, needed only by this tooling

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} must be a mapping")
    return data


class _Dropped:
    """Marker for a value whose ${env:X} is unset: the CLI drops the key."""


DROPPED = _Dropped()


def resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """`value` as the Components CLI sends it: ${env:X} filled in, keys with an unset X dropped."""
    if isinstance(value, str):
        names = _ENV_VAR.findall(value)
        if any(env.get(name, "") == "" for name in names):
            return DROPPED
        return _ENV_VAR.sub(lambda m: env[m.group(1)], value)
    if isinstance(value, dict):
        resolved = {key: resolve_env(item, env) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not DROPPED}
    if isinstance(value, list):
        return [item for item in (resolve_env(v, env) for v in value) if item is not DROPPED]
    return value


def resolve_plain(value: Any, doc: Mapping[str, Any]) -> Any:
    """Replace ${name}, ${stage}, ${app} with the document's own values (as the cloud does)."""
    if isinstance(value, str):
        for var in PLAIN_VARIABLES:
            if isinstance(doc.get(var), str):
                value = value.replace("${" + var + "}", doc[var])
        return value
    if isinstance(value, dict):
        return {key: resolve_plain(item, doc) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_plain(item, doc) for item in value]
    return value


def resolved(doc: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out = resolve_env(doc, env)
    if not isinstance(out, dict):
        raise ValueError("a component document must be a mapping")
    return dict(resolve_plain(out, out))

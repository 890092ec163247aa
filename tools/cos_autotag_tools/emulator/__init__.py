"""The local COS + Cloud Infinite emulator ("LocalStack for COS").

    from cos_autotag_tools.emulator import Emulator, Faults

    with Emulator(credentials={"AKIDLOCAL": "local-secret"}) as emu:
        emu.create_bucket("photos-1250000000", "ap-guangzhou")
        config = CosConfig(**emu.sdk_config("ap-guangzhou"))  # Scheme=http, IP/Port of the emulator
        ...

Modules, one concern each: `server` (HTTP), `service` (routing, auth, faults, logging),
`auth` (signatures), `store` (state, memory or disk), `objects`/`multipart`/`postform`/`listing`
(COS operations), `ci` (detect-label), `engine` (label engines), `triggers` (SCF COS trigger),
`faults` (fault knobs), `xml_bodies` (XML in and out), `cli` (the `local` command),
`profiles` (the contested COS rules, one switch each).
"""

from .emulator import DEFAULT_CREDENTIALS, Emulator
from .engine import DigestLabelEngine, LabelEngine
from .errors import CosError
from .faults import Faults
from .profiles import COS_PROFILES, DEFAULT_PROFILE, Profile
from .requestlog import RequestRecord
from .store import ObjectState
from .triggers import Invocation, Trigger

__all__ = [
    "COS_PROFILES",
    "DEFAULT_CREDENTIALS",
    "DEFAULT_PROFILE",
    "CosError",
    "DigestLabelEngine",
    "Emulator",
    "Faults",
    "Invocation",
    "LabelEngine",
    "ObjectState",
    "Profile",
    "RequestRecord",
    "Trigger",
]

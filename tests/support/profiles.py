"""Run a test under every reading of the contested COS rules the emulator can play.

    from tests.support.profiles import PROFILE_PARAMS

    @pytest.mark.parametrize("cos_profile", PROFILE_PARAMS)
    def test_x(cos_profile: Profile) -> None:
        with running_stack(profile=cos_profile) as stack: ...

or take the `profiled_emulator` fixture (tests/conftest.py), which is parametrized the same way.
`COS_PROFILES` is a small set in which every value of every rule appears at least once; its ids
read `<tag rule>-<metadata encoding>-<unbound answer>`, e.g. `strict-percent-404`.
"""

from __future__ import annotations

import pytest

from cos_autotag_tools.emulator import COS_PROFILES, DEFAULT_PROFILE, Profile

PROFILE_PARAMS = [pytest.param(profile, id=profile.name) for profile in COS_PROFILES]

__all__ = ["COS_PROFILES", "DEFAULT_PROFILE", "PROFILE_PARAMS", "Profile"]

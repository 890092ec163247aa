"""Local-only tooling: the COS + Cloud Infinite emulator and the offline label engines.

Nothing under this package is deployed to SCF; it may use the `local` extra (numpy, Pillow).
"""

from cos_autotag.settings import register_known_variables

# AUTOTAG_* names the tooling reads (not the function): the function run in the same
# environment (`cos-autotag local`, `invoke`, the demo) does not report them as unknown.
TOOLING_VARIABLES = ("AUTOTAG_SCF_ENDPOINT",)
register_known_variables(*TOOLING_VARIABLES)

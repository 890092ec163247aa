"""Local-only tooling: the COS + Cloud Infinite emulator and the offline label engines.

Nothing under this package is deployed to SCF; it may use the `local` extra (numpy, Pillow).
"""

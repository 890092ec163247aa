"""cos-autotag: label images in Tencent Cloud COS with Cloud Infinite detect-label, from SCF."""

__version__ = "0.1.0"

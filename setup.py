"""Build script. Metadata lives in pyproject.toml; this file only decides about the native extension.

The extension must be compiled against the torch it runs with. Under pip's default build
isolation there is no torch in the build environment, so nothing is compiled here and the
ops JIT-compile on first use (see gcpo_lite/kernels/_ext.py).
"""
from setuptools import setup

setup()

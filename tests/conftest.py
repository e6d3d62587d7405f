"""Shared fixtures: every test uses a private model cache, so tests never touch ~/.cache."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("gcpo_cache")
    old = os.environ.get("GCPO_LITE_CACHE")
    os.environ["GCPO_LITE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GCPO_LITE_CACHE", None)
    else:
        os.environ["GCPO_LITE_CACHE"] = old


@pytest.fixture(scope="session")
def embedded_model_dir(_private_cache):
    from gcpo_lite.models import ensure_embedded_model
    return ensure_embedded_model()

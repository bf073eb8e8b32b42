"""Shared fixtures. Importing tfdisc first selects legacy Keras for larq."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfdisc  # noqa: E402,F401  pylint: disable=wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.environ.get(
    "TFDISC_TEST_DATASETS", os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets"))


def _shared_dir(name):
    path = os.path.join(SHARED_DATASETS, name)
    if not os.path.isdir(path):
        pytest.skip(f"real {name} data not found at {path} (set TFDISC_TEST_DATASETS)")
    return path


@pytest.fixture(scope="session")
def mnist_dir():
    """Directory with the real MNIST IDX files (skips the test when absent)."""
    return _shared_dir("mnist")


@pytest.fixture(scope="session")
def cifar10_dir():
    """Directory with the real CIFAR10 JPEG archive (skips the test when absent)."""
    return _shared_dir("cifar10")


@pytest.fixture(autouse=True, scope="session")
def _test_cache_dir(tmp_path_factory):
    """Decoded-array cache in a session temp dir, so tests never touch ~/.cache."""
    old = os.environ.get("TFDISC_CACHE_DIR")
    os.environ["TFDISC_CACHE_DIR"] = str(tmp_path_factory.mktemp("tfdisc_cache"))
    yield
    if old is None:
        os.environ.pop("TFDISC_CACHE_DIR", None)
    else:
        os.environ["TFDISC_CACHE_DIR"] = old

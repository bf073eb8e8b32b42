"""Shared fixtures. Importing tfdisc first selects legacy Keras for larq."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfdisc  # noqa: E402,F401  pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position

# Two virtual CPUs, so `distribute_scope` can mirror over two replicas on a one-CPU host. This must
# happen before TensorFlow initialises its devices (the first op), i.e. here, at collection time.
try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
except RuntimeError:  # devices already initialised (e.g. another conftest ran ops first)
    pass

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


@pytest.fixture(params=["no_strategy", "mirrored"])
def distribute_scope(request):
    """Runs the test body without a strategy and under a MirroredStrategy over two virtual CPUs.

    As larq's conftest does: build, compile and fit inside the fixture's scope. Yields the
    strategy (None without one).
    """
    if request.param == "no_strategy":
        yield None
        return
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < 2:
        pytest.skip("two virtual CPUs could not be configured")
    # Reduction to one device, not the default collectives: with collectives, a later test's
    # MirroredStrategy in the same process failed ("Shape mismatch in the collective instance"),
    # while each test passed alone. Multi-worker collectives are tested in their own processes.
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:2]],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        yield strategy

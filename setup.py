"""Build and install tfdisc.

The C++ op library in ``cc_ops/`` is built against the installed TensorFlow
(see the marked section below and ``cc_ops/README.md``).
"""
import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(HERE, "tfdisc", "_version.py")) as f:
        scope = {}
        exec(f.read(), scope)  # pylint: disable=exec-used
    return scope["__version__"]


INSTALL_REQUIRES = [
    # Verified together on Python 3.11 (see README.md).
    "tensorflow>=2.16,<2.22",
    "tf-keras>=2.16,<2.22",
    "tensorboard>=2.16",
    "larq>=0.13.3,<0.15",
    "tensorflow-datasets>=4.9,<4.10",
    "keras-tuner>=1.4,<1.5",
    # keras-tuner's BayesianOptimization (tfdisc.tuning); grpcio (distributed search)
    # comes with keras-tuner.
    "scipy>=1.10",
    "scikit-learn>=1.3",
    "absl-py>=1.0",
    "numpy>=1.23,<2.3",
    "pillow>=9",
    "matplotlib>=3.6",
]

EXTRAS_REQUIRE = {
    # pytest-xdist: the suite runs on two processes (`-n 2`, README), about 1.5x faster on 2 cores.
    "test": ["pytest>=7", "hypothesis>=6", "pytest-xdist>=3.5"],
    "lce": ["larq-compute-engine>=0.16,<0.17"],
    # Exact BNN verification (tfdisc.certify.exact): the MILP solver HiGHS and the SAT solver Minicard.
    "verify": ["python-sat==1.8.dev24", "highspy==1.16.0"],
}

# --- op library build (cc_ops) ----------------------------------------------
# Owned by cc_ops (issue 4); see cc_ops/README.md "Build".
import importlib.util  # noqa: E402  pylint: disable=wrong-import-position
import shutil  # noqa: E402  pylint: disable=wrong-import-position

from setuptools.command.build_py import build_py as _build_py  # noqa: E402


def _ops_build_module():
    """tfdisc/ops/_build.py, loaded by path (it imports only the stdlib)."""
    spec = importlib.util.spec_from_file_location(
        "_tfdisc_ops_build", os.path.join(HERE, "tfdisc", "ops", "_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithOps(_build_py):
    """Ships the C++ sources with the package and prebuilds the op library.

    The sources go to ``tfdisc/ops/_src/cc_ops`` so that an installed tfdisc
    can compile the library on first use (tfdisc/ops/_loader.py). When
    TensorFlow is importable here (``pip install --no-build-isolation``,
    ``python setup.py build``) the library is compiled now, next to the
    package; otherwise (pip's isolated build env) that is deferred to the
    first ``import tfdisc.ops``. A failed build never fails the install.
    """

    def run(self):
        super().run()
        editable = getattr(self, "editable_mode", False)
        if editable:
            root, target = HERE, os.path.join(HERE, "tfdisc", "ops")
        else:
            root = os.path.join(self.build_lib, "tfdisc", "ops", "_src")
            shutil.rmtree(root, ignore_errors=True)
            # A library built in the source tree must not ride along as
            # package data: only one built below, for this TensorFlow, ships.
            import glob  # pylint: disable=import-outside-toplevel

            for stale in glob.glob(os.path.join(self.build_lib, "tfdisc", "ops",
                                                "_tfdisc_ops-*.so")):
                os.remove(stale)
            shutil.copytree(os.path.join(HERE, "cc_ops"), os.path.join(root, "cc_ops"),
                            ignore=shutil.ignore_patterns("tests", "*.py", "*.sh", "*.md",
                                                          "BUILD", "__pycache__"))
            target = os.path.join(self.build_lib, "tfdisc", "ops")
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except ImportError:
            print("tfdisc: TensorFlow not importable at build time; the op library "
                  "will be compiled on first `import tfdisc.ops`.")
            return
        build = _ops_build_module()
        try:
            path = os.path.join(target, build.library_name(build.build_key(root)))
            build.build_library(path, root=root)
            print(f"tfdisc: built {path}")
        except Exception as e:  # pylint: disable=broad-except
            print(f"tfdisc: op library not prebuilt ({e}); it will be compiled on "
                  "first `import tfdisc.ops`.")


CMDCLASS = {"build_py": BuildPyWithOps}
# --- end of op library build -------------------------------------------------

class _Distribution(setuptools.Distribution):
    """Platform-specific wheels: a wheel may carry the compiled op library."""

    def has_ext_modules(self):
        return True


setuptools.setup(
    name="tfdisc",
    distclass=_Distribution,
    version=_version(),
    description=(
        "Discretization defences against adversarial examples for TensorFlow: "
        "bit-depth input quantization, BNN/XNOR models, fast binary ops."
    ),
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["tfdisc", "tfdisc.*"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    cmdclass=CMDCLASS,
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

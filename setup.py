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
    "absl-py>=1.0",
    "numpy>=1.23,<2.3",
    "pillow>=9",
    "matplotlib>=3.6",
]

EXTRAS_REQUIRE = {
    "test": ["pytest>=7"],
    "lce": ["larq-compute-engine>=0.16,<0.17"],
}

# --- op library build (cc_ops) ----------------------------------------------
CMDCLASS = {}
# --- end of op library build -------------------------------------------------

setuptools.setup(
    name="tfdisc",
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

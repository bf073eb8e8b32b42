r"""MNIST: train a zoo model with discretized inputs, evaluate an FGSM sweep.

Example (paper Table V style, FCN2 BNN with 2-bit inputs):

  python -m tfdisc.experiments.mnist --model=fcn2 --bits=2 --binary --epochs=10 \
      --data_dir=../shared/datasets/mnist
"""
from absl import app

from tfdisc.experiments import common

DEFAULTS = dict(model="fcn2", epsilons=["0.1", "0.2", "0.3"])


def main(argv):
    common.run(argv, dataset="mnist")


if __name__ == "__main__":
    common.set_defaults(**DEFAULTS)
    app.run(main)

r"""MNIST: train a zoo model with discretized inputs, evaluate an FGSM sweep.

Example (paper Table V style, FCN2 BNN with 2-bit inputs):

  python -m tfdisc.experiments.mnist --model=fcn2 --bits=2 --binary --epochs=10 \
      --data_dir=../shared/datasets/mnist
"""
from tfdisc.experiments import train

DEFAULTS, main = train.binary("mnist")  # defaults from the registry entry (tfdisc.datasets)

if __name__ == "__main__":
    train.run_binary("mnist")

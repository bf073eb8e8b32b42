r"""CIFAR10: train a zoo model with discretized inputs, evaluate white-box sweeps.

Paper Tables I–IV and Figs. 4a/5a use the BinaryNet-style AlexNet
(``alexnet_cifar``). Examples:

  # Table IV cell BNN-2b with FGSM and PGD columns
  python -m tfdisc.experiments.cifar --binary --bits=2 --epochs=40 --attack=fgsm,pgd \
      --data_dir=../shared/datasets/cifar10

  # Table II cell: R-FGSM adversarial training (ε = 8/255), full precision, 2-bit input
  python -m tfdisc.experiments.cifar --bits=2 --adv_train --epochs=20 \
      --data_dir=../shared/datasets/cifar10

ε defaults to 1, 2, 4, 8, 16, 32 /255 (fractions like 8/255 are accepted);
--train_eps defaults to 8/255.
"""
from tfdisc.experiments import train

DEFAULTS, main = train.binary("cifar10")  # defaults from the registry entry (tfdisc.datasets)

if __name__ == "__main__":
    train.run_binary("cifar10")

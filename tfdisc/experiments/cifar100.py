r"""CIFAR100: ResNet-20 (XNOR by default) with discretized inputs (paper Fig. 7).

The paper trains ResNet-20 for 164 epochs and compares 2b/8b inputs for XNOR
and full precision at ε up to 32/255. No CIFAR100 copy is available offline
here; pass --data_dir to a directory with ``cifar-100-python/`` (or binary
batches, or an image-folder tree), or let tensorflow-datasets download it.

  python -m tfdisc.experiments.cifar100 --bits=2 --epochs=164 --attack=fgsm,pgd \
      --data_dir=/data/cifar100
"""
from tfdisc.experiments import train

DEFAULTS, main = train.binary("cifar100")  # defaults from the registry entry (tfdisc.datasets)

if __name__ == "__main__":
    train.run_binary("cifar100")

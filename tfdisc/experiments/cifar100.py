r"""CIFAR100: ResNet-20 (XNOR by default) with discretized inputs (paper Fig. 7).

The paper trains ResNet-20 for 164 epochs and compares 2b/8b inputs for XNOR
and full precision at ε up to 32/255. No CIFAR100 copy is available offline
here; pass --data_dir to a directory with ``cifar-100-python/`` (or binary
batches, or an image-folder tree), or let tensorflow-datasets download it.

  python -m tfdisc.experiments.cifar100 --bits=2 --epochs=164 --attack=fgsm,pgd \
      --data_dir=/data/cifar100
"""
from absl import app

from tfdisc.experiments import common

DEFAULTS = dict(model="resnet20", precision="xnor",
                epsilons=["1/255", "2/255", "4/255", "8/255", "16/255", "32/255"])


def main(argv):
    common.run(argv, dataset="cifar100")


if __name__ == "__main__":
    common.set_defaults(**DEFAULTS)
    app.run(main)

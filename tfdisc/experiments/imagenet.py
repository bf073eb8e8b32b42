r"""ImageNet: AlexNet (XNOR by default) with discretized inputs; top-1 and top-5 (paper Fig. 8).

The paper trains XNOR AlexNet for 50 epochs and full precision for 90, and
reports top-5 accuracy at ε up to 16/255. Pass --data_dir to an image-folder
tree ``train|val/<class>/*.JPEG`` (or a .tar.gz of one), or let
tensorflow-datasets prepare ``imagenet2012`` (manual download). results.json
adds ``top5`` (clean and per-ε top-5 accuracy) to the usual top-1 keys.

  python -m tfdisc.experiments.imagenet --bits=2 --epochs=50 \
      --data_dir=/data/imagenet
"""
from tfdisc.experiments import train

DEFAULTS, main = train.binary("imagenet2012")  # defaults from the registry entry (tfdisc.datasets)

if __name__ == "__main__":
    train.run_binary("imagenet2012")

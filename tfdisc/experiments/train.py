r"""Any registered dataset: train a zoo model with discretized inputs, evaluate the ε sweeps.

The defaults of a run (model, precision, ε grid, batch sizes, top-k) come from
the dataset's entry in ``tfdisc.datasets``; flags given on the command line
win. ``tfdisc.experiments.mnist``, ``cifar``, ``cifar100`` and ``imagenet`` are
this binary with ``--dataset`` fixed. A dataset added to the registry runs
with no script of its own:

  python -m tfdisc.experiments.train --dataset=fashion_mnist --bits=2 --binary \
      --data_dir=/data/fashion_mnist

Every other flag is that of ``tfdisc.experiments.common``.
"""
from absl import app, flags

from tfdisc.experiments import common  # shared flags; selects legacy Keras
from tfdisc import datasets  # noqa: E402

FLAGS = flags.FLAGS


def _check_dataset(name):
    if name is not None and name not in datasets.REGISTRY:
        raise flags.ValidationError(f"unknown dataset {name!r}; available: "
                                    f"{', '.join(datasets.names())}.")
    return True


def define_dataset_flag():
    """Defines ``--dataset``, this binary's one flag of its own (once; idempotent).

    Only ``python -m tfdisc.experiments.train`` defines it, so the per-dataset
    binaries keep exactly their flags. ``tfdisc.experiments.tune`` defines a
    ``--dataset`` of the same names too: whichever comes first is used.
    """
    if "dataset" not in FLAGS:
        flags.DEFINE_string("dataset", None, "A dataset of tfdisc.datasets (mnist, "
                            "fashion_mnist, cifar10, cifar100, imagenet2012, or one registered "
                            "there).", allow_override=True)
    # Checked even when tune's --dataset came first: absl checks an enum's choices
    # only when parsing a command line, not when a value is set in code.
    if not any(getattr(v, "checker", None) is _check_dataset
               for v in FLAGS["dataset"].validators):
        flags.register_validator("dataset", _check_dataset)


def defaults(name):
    """The flag defaults of a run on dataset ``name`` (a fresh dict: lists are copies)."""
    return {k: list(v) if isinstance(v, list) else v
            for k, v in datasets.get(name).run_defaults.items()}


def run(argv, name):
    """Runs ``common.run`` on dataset ``name`` with its entry's top-k; returns the record."""
    return common.run(argv, dataset=name, top_k=datasets.get(name).top_k)


def binary(name):
    """``(DEFAULTS, main)`` of the binary of dataset ``name``, e.g. ``tfdisc.experiments.mnist``."""
    def main(argv):
        run(argv, name)
    return defaults(name), main


def run_binary(name):
    """The ``__main__`` of a dataset's binary: its defaults, then ``app.run``."""
    _, main = binary(name)
    common.set_defaults(**defaults(name))
    app.run(main)


def run_with_defaults(argv, name):
    """``run`` after applying the entry's defaults to the flags left at their default."""
    common.set_defaults(**defaults(name))  # a flag given or set keeps its value
    return run(argv, name)


def main(argv):
    """``--dataset`` is required; its entry's defaults apply to the flags not given."""
    if FLAGS.dataset is None:
        raise app.UsageError(f"--dataset is required: one of {', '.join(datasets.names())}.")
    run_with_defaults(argv, FLAGS.dataset)


if __name__ == "__main__":
    define_dataset_flag()
    flags.mark_flag_as_required("dataset")
    app.run(main)

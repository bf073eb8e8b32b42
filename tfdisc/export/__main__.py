r"""Exports a saved tfdisc model to SavedModel, packed SavedModel, TFLite and LCE.

Example:

  python -m tfdisc.export --model=/tmp/mnist_fcn2_bnn_2b/model.keras \
      --formats=saved_model,packed_saved_model,tflite,lce --output_dir=/tmp/fcn2_export

Writes one artifact per format into --output_dir (names in
tfdisc.export.FILE_NAMES) and prints their sizes. --model takes a .keras file
or a run directory holding model.keras. With --check_images=N, also runs each
artifact on N images and prints its largest logit difference from the Keras
model and their argmax agreement: the first N test images of --dataset, or,
without --dataset, N uniform-noise images (labelled as noise: agreement on
noise understates agreement on real images).
"""
import os
import sys

from absl import app, flags, logging

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow loads)
from tfdisc import data, export
from tfdisc.export import cli

import tensorflow as tf  # pylint: disable=wrong-import-order

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Saved Keras model: a .keras file, or a run directory "
                    "holding model.keras.")
flags.DEFINE_list("formats", list(export.FORMATS),
                  f"Comma-separated formats from {', '.join(export.formats.names())}.")
flags.DEFINE_string("output_dir", None, "Directory for the exported artifacts.")
flags.DEFINE_bool("overwrite", False, "Replace an earlier export in --output_dir (only its "
                  "artifacts are removed).")
flags.DEFINE_bool("allow_unsafe", False,
                  "Also load legacy .h5 models (and SavedModels with file or Python ops). "
                  "DANGEROUS: loading such a file runs the code it carries (e.g. a Lambda "
                  "layer): arbitrary code execution. Only for files you trust.")
flags.DEFINE_integer("check_images", 0,
                     "Compare each artifact with the Keras model on this many images: test "
                     "images of --dataset, or uniform noise without --dataset.")
flags.DEFINE_enum("dataset", None, sorted(data.DATASETS),
                  "Dataset whose test images --check_images uses (read with tfdisc.data).")
flags.DEFINE_string("data_dir", None, "Local data directory for --dataset (default: "
                    "$TFDISC_DATA_DIR, then tensorflow-datasets).")
flags.mark_flags_as_required(["model", "output_dir"])
flags.register_validator("formats", cli.check_formats, "unknown export format")
flags.register_validator("check_images", lambda v: v >= 0, "must be >= 0")


def _check_pixels(model):
    """(uint8 pixels, description) for --check_images."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    n = FLAGS.check_images
    shape = tuple(model.input_shape[1:])
    if FLAGS.dataset is None:
        pixels = np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)
        return pixels, (f"{n} uniform-noise images (NOT real data: agreement on noise "
                        "understates agreement on real images; pass --dataset)")
    x, _ = data.load_arrays(FLAGS.dataset, "test", data_dir=FLAGS.data_dir)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"--dataset={FLAGS.dataset} has images of shape {x.shape[1:]}, but "
                         f"the model takes {shape}.")
    return x[:n], f"the first {min(n, len(x))} {FLAGS.dataset} test images"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.dataset and not FLAGS.check_images:
        raise app.UsageError("--dataset is only used by --check_images=N.")
    try:
        model = export.load(FLAGS.model, allow_unsafe=FLAGS.allow_unsafe)
        if not isinstance(model, tf.keras.Model):
            raise ValueError(f"--model={FLAGS.model!r} is an exported artifact, not a Keras "
                             "model; export from the .keras model (or its run directory).")
        paths = export.export(model, FLAGS.output_dir, FLAGS.formats,
                              overwrite=FLAGS.overwrite, **cli.options())
        pixels, described = _check_pixels(model) if FLAGS.check_images else (None, None)
    except (ValueError, TypeError, ImportError, FileNotFoundError, data.DataError) as e:
        sys.exit(f"tfdisc.export: {e}")
    for fmt, path in paths.items():
        print(f"{fmt:>20}: {os.path.relpath(path, FLAGS.output_dir)} "
              f"({export.artifact_bytes(path) / 1024:.1f} KiB)")
    if pixels is not None:
        print(f"Agreement with the Keras model on {described}:")
        for fmt, stats in export.compare(model, paths, pixels).items():
            print(f"{fmt:>20}: max |logit diff| {stats['max_logit_diff']:.3g}, argmax "
                  f"agreement {stats['argmax_agreement']:.3f}")
    logging.info("Exported %s to %s", ", ".join(paths), FLAGS.output_dir)


if __name__ == "__main__":
    app.run(main)

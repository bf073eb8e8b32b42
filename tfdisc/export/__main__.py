r"""Exports a saved tfdisc model to SavedModel, packed SavedModel, TFLite and LCE.

Example:

  python -m tfdisc.export --model=/tmp/mnist_fcn2_bnn_2b/model.keras \
      --formats=saved_model,packed_saved_model,tflite,lce --output_dir=/tmp/fcn2_export

Writes one artifact per format into --output_dir (names in
tfdisc.export.FILE_NAMES) and prints their sizes; with --check_images=N,
also runs each artifact on N random images and prints its largest logit
difference from the Keras model.
"""
import os

from absl import app, flags, logging

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow loads)
from tfdisc import export

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Saved Keras model (.keras/.h5) of tfdisc/larq layers.")
flags.DEFINE_list("formats", list(export.FORMATS),
                  f"Comma-separated formats from {', '.join(export.FORMATS)}.")
flags.DEFINE_string("output_dir", None, "Directory for the exported artifacts.")
flags.DEFINE_enum("input_dtype", "float32", list(export.INPUT_DTYPES),
                  "Input of the exported signature: float32 images in the model's range, "
                  "or uint8 raw pixels 0-255.")
flags.DEFINE_enum("float_weights", "float32", list(export.FLOAT_WEIGHTS),
                  "Weights of the full-precision layers in the flatbuffers (tflite, lce): "
                  "float32, or int8 (per-channel, float activations: TFLite hybrid kernels).")
flags.DEFINE_integer("check_images", 0,
                     "Compare each artifact with the Keras model on this many random images.")
flags.mark_flags_as_required(["model", "output_dir"])
flags.register_validator("formats", lambda v: bool(export.parse_formats(v)),
                         "unknown export format")
flags.register_validator("check_images", lambda v: v >= 0, "must be >= 0")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    model = export.load(FLAGS.model)
    paths = export.export(model, FLAGS.output_dir, FLAGS.formats,
                          input_dtype=FLAGS.input_dtype, float_weights=FLAGS.float_weights)
    for fmt, path in paths.items():
        print(f"{fmt:>20}: {os.path.relpath(path, FLAGS.output_dir)} "
              f"({export.artifact_bytes(path) / 1024:.1f} KiB)")
    if FLAGS.check_images:
        import numpy as np  # pylint: disable=import-outside-toplevel

        rng = np.random.default_rng(0)
        shape = (FLAGS.check_images, *model.input_shape[1:])
        if FLAGS.input_dtype == "uint8":
            x = rng.integers(0, 256, shape, dtype=np.uint8)
            want = model(x.astype(np.float32) / 255.0, training=False).numpy()
        else:
            x = rng.random(shape, dtype=np.float32)
            want = model(x, training=False).numpy()
        for fmt, path in paths.items():
            got = export.predictor(path)(x)
            print(f"{fmt:>20}: max |logit diff| {np.abs(got - want).max():.3g}, argmax "
                  f"agreement {(got.argmax(-1) == want.argmax(-1)).mean():.3f}")
    logging.info("Exported %s to %s", ", ".join(paths), FLAGS.output_dir)


if __name__ == "__main__":
    app.run(main)

r"""File sizes of the float TFLite and LCE flatbuffers at the zoo's default sizes.

Untrained weights suffice for sizes. ``lce_int8`` is the LCE flatbuffer with
``float_weights="int8"`` (the full-precision first and last layers' kernels
as int8, see tfdisc.export.weights). Checks issue 9's targets: the LCE
flatbuffer of alexnet_cifar BNN <= 1/15 of its float TFLite, and fcn1 BNN
>= 20x smaller than float once its dense layers binarize.

Usage (from the repository root):
  PYTHONPATH=. python experiments/export/sizes.py --output=experiments/export/results/sizes.json
"""
import json
import os
import tempfile

from absl import app, flags

import tfdisc  # noqa: F401
import larq as lq

from tfdisc import export

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "JSON file for the sizes.")
flags.DEFINE_list("models", ["alexnet_cifar", "fcn1"], "Zoo models at their default sizes.")


def main(argv):
    del argv
    results = {}
    for name in FLAGS.models:
        model = tfdisc.models.build(name, precision="binary", input_bits=2)
        params = model.count_params()
        binary = sum(int(l.kernel.shape.num_elements()) for l in model.layers
                     if isinstance(l, (lq.layers.QuantConv2D, lq.layers.QuantDense)))
        with tempfile.TemporaryDirectory() as tmp:
            paths = export.export(model, tmp, ["tflite", "lce"])
            sizes = {fmt: os.path.getsize(p) for fmt, p in paths.items()}
            ops = export.lite_ops(paths["lce"])
            # Full-precision (first and last) layers' kernels as int8 too.
            int8 = export.lce(model, os.path.join(tmp, "lce_int8.tflite"), float_weights="int8")
            sizes["lce_int8"] = os.path.getsize(int8)
            int8_ops = export.lite_ops(int8)
        results[name] = {
            "params": params, "binary_params": binary,
            "tflite_bytes": sizes["tflite"], "lce_bytes": sizes["lce"],
            "ratio_float_over_lce": sizes["tflite"] / sizes["lce"],
            "lce_int8_bytes": sizes["lce_int8"],
            "ratio_float_over_lce_int8": sizes["tflite"] / sizes["lce_int8"],
            "lce_int8_binary_ops": int8_ops.get("LceBconv2d", 0),
            "lce_binary_ops": ops.get("LceBconv2d", 0),
            "binary_layers": sum(isinstance(l, (lq.layers.QuantConv2D, lq.layers.QuantDense))
                                 for l in model.layers),
        }
        print(name, json.dumps(results[name]), flush=True)
        del model
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)

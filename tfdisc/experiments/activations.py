r"""Activation analysis (paper Fig. 6): L1 norm of hidden activations, clean vs adversarial.

For each model (FCN1/FCN2 × full/binary, trained here or loaded with
--model_dirs) and each ε (0 = clean), computes the per-example L1 norm of the
pre-activation outputs of

* ``dense_in``: the first hidden layer (full precision in every model, as in
  BNN practice), and
* ``dense_1``: the first hidden layer whose weights are binarized in the BNN
  (its inputs are ``sign`` of the previous layer); the paper's argument is
  about ±1 weights, which this layer has,

normalized by the model's mean clean L1 norm (so clean is centred on 1 and
models of different scale compare). Adversarial inputs come from the first
--attack (FGSM by default, gradient through the input quantizer,
straight-through). Writes ``activations.json`` and ``activations.png``.

  python -m tfdisc.experiments.activations --models=fcn2 --precisions=full,binary \
      --epsilons=0.1,0.3 --epochs=10 --data_dir=../shared/datasets/mnist
  # or reuse trained models (directories with model.keras and results.json):
  python -m tfdisc.experiments.activations --model_dirs=/runs/fcn2_full_8b,/runs/fcn2_binary_8b \
      --data_dir=../shared/datasets/mnist
"""
import dataclasses
import json
import os

from absl import app, flags, logging

from tfdisc.experiments import common  # defines the shared flags; selects legacy Keras
import numpy as np  # noqa: E402  pylint: disable=wrong-import-order
import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-order

from tfdisc import activations as activations_lib  # noqa: E402
from tfdisc import data as data_lib, evaluate, pipeline, results  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_list("models", "fcn2", "Models to train and analyse (FCN models of tfdisc.models).")
flags.DEFINE_list("precisions", "full,binary", "Precisions to train and analyse.")
flags.DEFINE_list("model_dirs", [], "Analyse these trained models instead (directories holding "
                  "model.keras and results.json, as the experiment binaries write them).")
flags.DEFINE_list("layers", "dense_in,dense_1", "Layers whose outputs are analysed.")

DEFAULTS = dict(epsilons=["0.1", "0.3"], test_limit=1000, bits=8)


def _train(cfg, x_train, y_train):
    tf.keras.utils.set_random_seed(cfg.seed)
    model = pipeline.build_model(cfg)
    pipeline.train(model, cfg, x_train, y_train)
    return model, {"model": cfg.model, "precision": cfg.precision, "bits": cfg.bits,
                   "epochs": cfg.epochs, "width": cfg.model_width,
                   "source": "trained by this run"}


def _load(directory):
    model = pipeline.load_model(directory, "--model_dirs")
    with open(os.path.join(directory, "results.json")) as f:
        rec = json.load(f)
    return model, {k: rec.get(k) for k in ("model", "precision", "bits", "epochs", "width",
                                          "adv_train")} | {"source": directory}


def plot(entries, layer_names, path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, axes = plt.subplots(len(layer_names), 1, figsize=(max(6, 1.6 * len(entries) + 2),
                                                             3.2 * len(layer_names)),
                             squeeze=False)
    for ax, layer in zip(axes[:, 0], layer_names):
        boxes, labels, positions = [], [], []
        pos = 0
        for entry in entries:
            for key, values in entry["normalized"][layer].items():
                boxes.append(values)
                labels.append(f"{entry['label']}\nε={key}")
                positions.append(pos)
                pos += 1
            pos += 0.8
        ax.boxplot(boxes, positions=positions, widths=0.6, showfliers=False)
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("L1 / mean clean L1")
        ax.set_title(f"{layer}: normalized L1 norm of pre-activations "
                     f"({FLAGS.attack[0].upper()}, straight-through gradient)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    run(argv)


def run(argv):
    """Trains or loads the models, analyses them, writes activations.json/.png; returns the record."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cfg = common.config("mnist")
    attack = cfg.attacks[0]
    out = FLAGS.output_dir or "runs/mnist_activations"
    os.makedirs(out, exist_ok=True)
    x_test, y_test = data_lib.load_arrays("mnist", "test", data_dir=cfg.data_dir)
    x_test = (x_test[:cfg.test_limit].astype(np.float32) / 255.0)
    y_test = y_test[:cfg.test_limit]
    loaded = []
    if FLAGS.model_dirs:
        loaded = [_load(d) for d in FLAGS.model_dirs]
    else:
        x_train, y_train = data_lib.load_arrays("mnist", "train", data_dir=cfg.data_dir)
        x_train, y_train = x_train[:cfg.train_limit], y_train[:cfg.train_limit]
        for name in FLAGS.models:
            for precision in FLAGS.precisions:
                loaded.append(_train(dataclasses.replace(cfg, model=name, precision=precision),
                                     x_train, y_train))
    entries, report = [], []
    for model, meta in loaded:
        meta["gradient"] = evaluate.quantizer_gradient(model)
        norms = activations_lib.layer_norms(
            model, x_test, y_test, cfg.epsilons, FLAGS.layers, attack=attack,
            batch_size=cfg.eval_batch_size, **evaluate.attack_params(
                attack, cfg.attack_params.get(attack, {})))
        label = f"{meta['model']} {meta['precision']} {meta['bits']}b"
        normalized, stats = activations_lib.normalized_stats(norms)
        entries.append({"label": label, "normalized": normalized})
        report.append({**meta, "label": label, "layers": stats})
        logging.info("%s: %s", label, {l: {k: round(s["std"], 3) for k, s in
                                           v["normalized"].items()} for l, v in stats.items()})
    record = {
        "figure": "paper Fig. 6",
        "attack": attack,
        "gradient": sorted({m["gradient"] or "n/a" for m in report}),
        "normalization": "per-example L1 norm of the layer's pre-activation output divided by "
                         "the model's mean clean L1 norm",
        "data": {"source": results.portable_path(cfg.data_dir, out)
                 or "tensorflow-datasets", "test_examples": int(len(y_test))},
        "epsilons": [results.epsilon_key(e) for e in cfg.epsilons],
        "models": report,
        "command": common.command_line(),
    }
    results.write_json(os.path.join(out, "activations.json"), record)
    plot(entries, FLAGS.layers, os.path.join(out, "activations.png"))
    logging.info("Wrote %s", out)
    return record


if __name__ == "__main__":
    common.set_defaults(**DEFAULTS)
    app.run(main)

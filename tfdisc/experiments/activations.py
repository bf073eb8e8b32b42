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
      --epsilons=0.1,0.3 --epochs=10 --data_dir=../shared/datasets/mnist --output_dir=/tmp/act
  # or reuse trained models (directories with model.keras and results.json):
  python -m tfdisc.experiments.activations --model_dirs=/runs/fcn2_full_8b,/runs/fcn2_binary_8b \
      --data_dir=../shared/datasets/mnist --output_dir=/tmp/act
"""
import json
import os

from absl import app, flags, logging

from tfdisc.experiments import common  # defines the shared flags; selects legacy Keras
import numpy as np  # noqa: E402  pylint: disable=wrong-import-order
import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-order

from tfdisc import attacks, data as data_lib, evaluate, models  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_list("models", "fcn2", "Models to train and analyse (FCN models of tfdisc.models).")
flags.DEFINE_list("precisions", "full,binary", "Precisions to train and analyse.")
flags.DEFINE_list("model_dirs", [], "Analyse these trained models instead (directories holding "
                  "model.keras and results.json, as the experiment binaries write them).")
flags.DEFINE_list("layers", "dense_in,dense_1", "Layers whose outputs are analysed.")

DEFAULTS = dict(epsilons=["0.1", "0.3"], test_limit=1000, bits=8)


def _train(name, precision, x_train, y_train):
    tf.keras.utils.set_random_seed(FLAGS.seed)
    shape, classes = data_lib.info("mnist")
    model = models.build(name, precision=precision, input_bits=FLAGS.bits, num_classes=classes,
                         input_shape=shape, width=FLAGS.width, depth=FLAGS.depth,
                         gradient=FLAGS.gradient)
    train = data_lib.from_arrays(x_train, y_train, batch_size=FLAGS.batch_size, shuffle=True,
                                 seed=FLAGS.seed)
    common.compile_model(model, int(train.cardinality().numpy()) * FLAGS.epochs)
    if FLAGS.epochs:
        model.fit(train, epochs=FLAGS.epochs, verbose=2)
    return model, {"model": name, "precision": precision, "bits": FLAGS.bits,
                   "epochs": FLAGS.epochs, "width": FLAGS.width or models.spec(name)["width"],
                   "source": "trained by this run"}


def _load(directory):
    model = tf.keras.models.load_model(os.path.join(directory, "model.keras"), compile=False)
    with open(os.path.join(directory, "results.json")) as f:
        rec = json.load(f)
    return model, {k: rec.get(k) for k in ("model", "precision", "bits", "epochs", "width",
                                          "adv_train")} | {"source": directory}


def _perturb(model, x, y, eps):
    name = FLAGS.attack[0]
    if eps == 0.0:
        return x
    if name == "fgsm":
        return attacks.fgsm(model, x, y, eps)
    if name == "rfgsm":
        return attacks.rfgsm(model, x, y, eps)
    step = common.attack_kwargs()["pgd_step_size"] or attacks.default_step_size(
        eps, FLAGS.pgd_steps)
    return attacks.pgd(model, x, y, eps, step_size=step, steps=FLAGS.pgd_steps)


def analyse(model, x, y, epsilons, layer_names):
    """{layer: {eps key: per-example L1 norms (np.ndarray)}} of the named layers' outputs."""
    missing = [n for n in layer_names if n not in [l.name for l in model.layers]]
    if missing:
        raise ValueError(f"Model {model.name} has no layer(s) {missing}; layers: "
                         f"{[l.name for l in model.layers]}.")
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in layer_names])
    norms = {n: {} for n in layer_names}
    for eps in [0.0] + sorted(e for e in set(epsilons) if e > 0):
        per_layer = {n: [] for n in layer_names}
        for start in range(0, len(y), FLAGS.eval_batch_size):
            xb = tf.constant(x[start:start + FLAGS.eval_batch_size])
            yb = y[start:start + FLAGS.eval_batch_size]
            outs = probe(_perturb(model, xb, yb, eps), training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for n, out in zip(layer_names, outs):
                per_layer[n].append(tf.reduce_sum(
                    tf.abs(tf.reshape(out, [tf.shape(out)[0], -1])), axis=1).numpy())
        for n in layer_names:
            norms[n][common.epsilon_key(eps)] = np.concatenate(per_layer[n])
    return norms


def _summary(values, scale):
    v = values / scale
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p5": float(np.percentile(v, 5)), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


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
    epsilons = [common.parse_epsilon(e) for e in FLAGS.epsilons]
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    x_test, y_test = data_lib.load_arrays("mnist", "test", data_dir=FLAGS.data_dir)
    x_test = (x_test[:FLAGS.test_limit].astype(np.float32) / 255.0)
    y_test = y_test[:FLAGS.test_limit]
    loaded = []
    if FLAGS.model_dirs:
        loaded = [_load(d) for d in FLAGS.model_dirs]
    else:
        x_train, y_train = data_lib.load_arrays("mnist", "train", data_dir=FLAGS.data_dir)
        x_train, y_train = x_train[:FLAGS.train_limit], y_train[:FLAGS.train_limit]
        for name in FLAGS.models:
            for precision in FLAGS.precisions:
                loaded.append(_train(name, precision, x_train, y_train))
    entries, report = [], []
    for model, meta in loaded:
        meta["gradient"] = evaluate.quantizer_gradient(model)
        norms = analyse(model, x_test, y_test, epsilons, FLAGS.layers)
        label = f"{meta['model']} {meta['precision']} {meta['bits']}b"
        entry = {"label": label, "normalized": {}}
        stats = {}
        for layer, by_eps in norms.items():
            scale = float(by_eps["0"].mean()) or 1.0
            entry["normalized"][layer] = {k: v / scale for k, v in by_eps.items()}
            stats[layer] = {"mean_clean_l1": scale,
                            "normalized": {k: _summary(v, scale) for k, v in by_eps.items()}}
        entries.append(entry)
        report.append({**meta, "label": label, "layers": stats})
        logging.info("%s: %s", label, {l: {k: round(s["std"], 3) for k, s in
                                           v["normalized"].items()} for l, v in stats.items()})
    record = {
        "figure": "paper Fig. 6",
        "attack": FLAGS.attack[0],
        "gradient": sorted({m["gradient"] or "n/a" for m in report}),
        "normalization": "per-example L1 norm of the layer's pre-activation output divided by "
                         "the model's mean clean L1 norm",
        "data": {"source": FLAGS.data_dir or "tensorflow-datasets",
                 "test_examples": int(len(y_test))},
        "epsilons": [common.epsilon_key(e) for e in epsilons],
        "models": report,
        "command": common.command_line(),
    }
    with open(os.path.join(FLAGS.output_dir, "activations.json"), "w") as f:
        json.dump(record, f, indent=1)
    plot(entries, FLAGS.layers, os.path.join(FLAGS.output_dir, "activations.png"))
    logging.info("Wrote %s", FLAGS.output_dir)
    return record


if __name__ == "__main__":
    common.set_defaults(**DEFAULTS)
    app.run(main)

"""Re-certifies a committed row with the current certifier and replaces its ``certified`` block.

The row's other numbers (attacks, transfer, clean accuracy) stay: only ``--certify`` is re-run,
on the row's saved model, on the same first N test images and at the same ε as the committed
block, through the pipeline's own ``certify_test_set`` (``method="auto"``: the exact verifier
where it applies). The saved model must be the row's: its clean accuracy on those N images must
equal the one the row recorded there, else nothing is written. The block gets a ``recertified``
entry with the command, the CPU and what the previous block said, so the change is traceable.

With ``--attacks`` the row's attacks (its ``flags.json``: the same attacks, parameters and, for
transfer, source model) are run again on those N images, as ``--certify`` now does in a run, and
their adversarial images are the certifier's candidate counterexamples (each re-checked on the
model inside the ball). Their random starts are new draws, so these images are not the ones
behind the row's attack columns: the block's counterexamples are those of this re-run.

Example (from the repository root):
  python experiments/scripts/recertify.py --run_dir=../runs/mnist/fcn2_full_2b \
      --results=experiments/results/mnist/fcn2/fcn2_full_2b/results.json --time_limit=1
"""
import datetime
import json
import os
import types

from absl import app, flags

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow)
# pylint: disable=wrong-import-position,wrong-import-order
import numpy as np  # noqa: E402

from tfdisc import data, pipeline, results, run_dir  # noqa: E402
from tfdisc.benchmarks import cpu  # noqa: E402
from tfdisc.experiments import common, report_bracket  # noqa: E402  (common: --data_dir)

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "The row's run directory (its model.keras is certified).")
flags.DEFINE_string("results", None, "The committed results.json whose certified block is "
                    "replaced (its flags.json beside it gives the attacks for --attacks). "
                    "--data_dir: the dataset (default: the row's data source, relative to the "
                    "repository).")
flags.DEFINE_bool("attacks", False, "Re-run the row's attacks on the certified images and "
                  "give their adversarial images to the certifier as candidate counterexamples.")
flags.DEFINE_enum("method", "auto", ["auto", "exact", "branch"], "Certification method.")
flags.DEFINE_enum("solver", "milp", ["milp", "sat"], "Exact verifier's solver.")
flags.DEFINE_float("time_limit", 10.0, "Seconds per example and ε for the exact verifier.")
flags.DEFINE_bool("dry_run", False, "Print the new block; do not write it.")
flags.mark_flags_as_required(["run_dir", "results"])


def recorded_clean(rec, n):
    """The clean accuracy the row recorded on its first ``n`` test images, or None."""
    for entry in (rec.get("attacks") or {}).values():
        if isinstance(entry, dict):
            clean = report_bracket.on_first(entry, n, None)
            if clean is not None:
                return clean
    return None

def rerun_attacks(model, cfg, x, y):
    """The row's attacks (and transfer, and the straight-through twin's) re-run on ``x, y``:
    ``{name: {eps: adversarial images}}``, as a run hands them to ``--certify``."""
    with open(os.path.join(os.path.dirname(FLAGS.results), "flags.json")) as f:
        values = json.load(f)
    cfg.attacks = tuple(values["attack"])
    cfg.attack_params, cfg.attack_limits = common.attack_settings(values)
    adversarial = {}
    pipeline.evaluate_attacks(model, cfg, x, y, adversarial=adversarial)
    if values.get("transfer_from"):
        source = run_dir.load_model(values["transfer_from"])
        pipeline.evaluate_attacks(model, cfg, x, y, attack_model=source, top_k=(1,),
                                  attacks=cfg.attacks[:1], adversarial=adversarial,
                                  prefix="transfer:")
    pipeline.masking_check(model, cfg, x, y, adversarial=adversarial)
    return adversarial


def main(argv):
    del argv
    with open(FLAGS.results) as f:
        rec = json.load(f)
    old = rec.get("certified")
    if not old or not old.get("examples"):
        raise app.UsageError(f"{FLAGS.results}: no certified block to replace")
    n = old["examples"]
    epsilons = sorted(results.parse_epsilon(k) for k in old["certified"])
    data_dir = FLAGS.data_dir or rec["data"]["source"]
    x, y = data.load_arrays(rec["dataset"], "test", data_dir=data_dir)
    x, y = x[:n], np.asarray(y[:n], np.int64).reshape(-1)
    model = run_dir.load_model(FLAGS.run_dir)
    clean = float(np.mean(model.predict(data.to_float(x), batch_size=500, verbose=0).argmax(1) == y))
    want = recorded_clean(rec, n)
    if want is None or abs(clean - want) > 1e-9:
        raise app.UsageError(f"{FLAGS.run_dir}: clean accuracy {clean} on the first {n} test "
                             f"images, the row recorded {want}: not this row's model")
    cfg = types.SimpleNamespace(certify_limit=n, eval_batch_size=rec.get("eval_batch_size", 1000),
                                epsilons=epsilons, certify_method=FLAGS.method,
                                certify_solver=FLAGS.solver, certify_time_limit=FLAGS.time_limit,
                                certify=True, top_k=(1,))
    candidates = rerun_attacks(model, cfg, data.to_float(x), y) if FLAGS.attacks else None
    block = pipeline.certify_test_set(model, cfg, x, y, candidates)
    block["recertified"] = {
        "date": datetime.date.today().isoformat(), "cpu": cpu.summary(),
        "command": (f"python experiments/scripts/recertify.py --run_dir="
                    f"{os.path.basename(os.path.normpath(FLAGS.run_dir))} --results="
                    f"{os.path.relpath(FLAGS.results)} --method={FLAGS.method} --solver="
                    f"{FLAGS.solver} --time_limit={FLAGS.time_limit:g}"
                    + (" --attacks" if FLAGS.attacks else "")),
        "previous": {k: old.get(k) for k in ("certified", "counterexample", "unknown")}
        | {"method": (old.get("method") or {}).get("requested")}}
    text = json.dumps(block, indent=1)
    print(text)
    if not FLAGS.dry_run:
        rec["certified"] = block
        with open(FLAGS.results, "w") as f:
            json.dump(rec, f, indent=1)


if __name__ == "__main__":
    app.run(main)

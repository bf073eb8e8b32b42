r"""Capacity search with keras-tuner (tfdisc.tuning): width, depth, input bits, precision.

Objective: adversarial accuracy (--objective_attack, PGD by default, FGSM
selectable) at --objective_eps with the gradient straight through the input
quantizer, maximized, on --validation_examples held out of the TRAINING set.
The test set (--attack, --epsilons, --test_limit, --pgd_test_limit) is only
used for the trials reported at the end (--report: best, pareto or all).

  python -m tfdisc.experiments.tune --model=fcn2 --tuner=random --max_trials=8 \
      --width_space=64..1024*2 --depth_space=2,3,4 --bits_space=8,2 --precision_space=full,binary \
      --epochs=2 --data_dir=../shared/datasets/mnist --output_dir=runs/tune_fcn2

  # the capacity grid of issue 10 (reduced schedule)
  python -m tfdisc.experiments.tune --tuner=grid --width_space=150,300,600 --depth_space=4 \
      --bits_space=8,2 --precision_space=full,binary --report=all ...

Rerunning the same command on the same --output_dir resumes the search;
--stop_after=N stops this process after N trials. A rerun whose flags change the
trials (the spaces, the objective, the schedule, the budget, ...) is refused:
the search records them (search/tfdisc_search.json). --overwrite deletes the
earlier search's outputs and starts over (not in a distributed search: delete
them before starting the chief and workers). A search in which no trial
completes writes no model.keras and exits with status 1.

Distributed (keras-tuner's oracle service; same command in every process, on
a shared --output_dir): one chief and any number of workers, selected by
--tuner_id/--oracle_ip/--oracle_port or the environment variables
KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT (a tuner id
containing "chief" serves the oracle and writes the results):

  python -m tfdisc.experiments.tune ... --tuner_id=chief --oracle_ip=127.0.0.1 \
      --oracle_port=8000 &
  python -m tfdisc.experiments.tune ... --tuner_id=worker0 --oracle_ip=127.0.0.1 \
      --oracle_port=8000 &
  python -m tfdisc.experiments.tune ... --tuner_id=worker1 --oracle_ip=127.0.0.1 \
      --oracle_port=8000

A worker silent for --lease_seconds (killed, hung) loses its trial, which is
retried (--max_retries_per_trial) or marked failed; no wait lasts longer than
--timeout_seconds.
"""
import os

from absl import app, flags

from tfdisc.experiments import common  # shared flags; selects legacy Keras
from tfdisc import data, models, results, tuning  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_enum("dataset", None, sorted(data.DATASETS), "Dataset; default the model's own "
                  "(mnist for fcn1/fcn2).")
flags.DEFINE_enum("tuner", "random", list(tuning.TUNERS), "keras-tuner search algorithm.")
flags.DEFINE_integer("max_trials", 10, "Trials of the random/Bayesian search (grid: a cap only "
                     "if given, the grid is exhausted otherwise; Hyperband: unused).")
flags.DEFINE_integer("hyperband_factor", 3, "Hyperband reduction factor (--epochs is its "
                     "max_epochs).")
flags.DEFINE_string("width_space", "150,300,600", "Width choices (150,300,600) or a range "
                    "LOW..HIGH, LOW..HIGH/STEP, LOW..HIGH*FACTOR (log).")
flags.DEFINE_string("depth_space", "4", "Depth choices or range, as --width_space.")
flags.DEFINE_string("bits_space", "8", "Input bit-depth choices or range, in 1..8.")
flags.DEFINE_list("precision_space", "full,binary", "Precision choices (full, binary, xnor).")
flags.DEFINE_enum("objective_attack", "pgd", ["pgd", "fgsm"],
                  "Attack of the objective (gradient through the quantizer, straight-through).")
flags.DEFINE_string("objective_eps", "0.1", "ε of the objective (fractions like 8/255 accepted).")
flags.DEFINE_integer("validation_examples", 5000, "Examples held out of the training set to "
                     "measure the objective.")
flags.DEFINE_integer("max_binary_macs", None, "Budget: trials whose model has more binary "
                     "MACs are not trained (recorded as skipped).")
flags.DEFINE_integer("max_packed_bytes", None, "Budget: trials whose packed model (binary "
                     "kernels at 1 bit) is larger are not trained (recorded as skipped).")
flags.DEFINE_enum("report", "pareto", list(tuning.REPORTS),
                  "Trials evaluated on the test set at the end.")
flags.DEFINE_enum("capacity", "packed_bytes", list(tuning.CAPACITY_AXES),
                  "Capacity axis of the Pareto front and the plot.")
flags.DEFINE_list("transfer_attacks", [], "Black-box transfer between precision twins: "
                  "for each reported trial whose twin (same width, depth and bits, other "
                  "precision) is reported too, these attacks craft examples on the twin and "
                  "the trial is evaluated on them (trials.json test.transfer). Empty: none.")
flags.DEFINE_integer("transfer_limit", None, "Run --transfer_attacks on the first N test "
                     "examples only (each costs one white-box attack on the twin).")
flags.DEFINE_integer("stop_after", None, "Stop this process after N trials (rerun to resume).")
flags.DEFINE_integer("max_retries_per_trial", 1, "Retries of a crashed trial (e.g. its "
                     "worker was killed) before it is marked failed.")
flags.DEFINE_integer("max_consecutive_failures", 3, "Stop the search after this many "
                     "consecutive failed trials (skipped trials do not count).")
flags.DEFINE_string("tuner_id", None, "Distributed: this process's id ('chief' serves the "
                    "oracle); default $KERASTUNER_TUNER_ID.")
flags.DEFINE_string("oracle_ip", None, "Distributed: the chief's IP; default "
                    "$KERASTUNER_ORACLE_IP.")
flags.DEFINE_integer("oracle_port", None, "Distributed: the chief's port; default "
                     "$KERASTUNER_ORACLE_PORT.")
flags.DEFINE_float("lease_seconds", 120.0, "Distributed: a worker silent this long loses "
                   "its trial.")
flags.DEFINE_float("heartbeat_seconds", 10.0, "Distributed: heartbeat period of a worker.")
flags.DEFINE_float("timeout_seconds", 600.0, "Bound of every distributed wait (gRPC calls, "
                   "a worker waiting for a trial, a chief nobody calls).")

# Flags of the single-run binaries that a search sets per trial or does not use.
_NOT_FOR_TUNE = {"width": "--width_space", "depth": "--depth_space", "bits": "--bits_space",
                 "precision": "--precision_space", "binary": "--precision_space",
                 "adv_train": None,
                 "train_eps": None, "adv_ratio": None, "init_from": None,
                 "transfer_from": None, "gradient": None, "save_model": None,
                 "distribute": "--tuner_id/--oracle_ip/--oracle_port", "connect_timeout": None,
                 "backup": "a rerun, which resumes the search", "backup_dir": None,
                 "export": "tfdisc.export on OUTPUT_DIR/model.keras"}

DEFAULTS = dict(model="fcn2", epochs=2, attack=["fgsm", "pgd"], epsilons=["0.1", "0.2", "0.3"],
                verbose="0")


def settings():
    """The search described by the flags, as ``tfdisc.tuning.SearchSettings``."""
    for name, instead in _NOT_FOR_TUNE.items():
        if FLAGS[name].present:
            raise flags.ValidationError(
                f"--{name} does not apply to a search" + (f"; use {instead}." if instead
                                                          else "."))
    try:
        space = tuning.Space(width=FLAGS.width_space, depth=FLAGS.depth_space,
                             bits=FLAGS.bits_space, precision=tuple(FLAGS.precision_space))
        cfg = common.config(FLAGS.dataset or models.spec(FLAGS.model)["dataset"])
        pgd = cfg.attack_params.get("pgd", {})
        objective = tuning.Objective(
            FLAGS.objective_attack, results.parse_epsilon(FLAGS.objective_eps),
            params=dict(pgd) if FLAGS.objective_attack == "pgd" else {},
            batch_size=FLAGS.eval_batch_size)
        dist = tuning.Distributed.from_env(FLAGS.tuner_id, FLAGS.oracle_ip, FLAGS.oracle_port)
        output_dir = FLAGS.output_dir or os.path.join(
            "runs", f"tune_{cfg.dataset}_{cfg.model}_{FLAGS.tuner}")
        return tuning.SearchSettings(
            base=cfg, space=space, objective=objective, output_dir=output_dir,
            tuner=FLAGS.tuner,
            max_trials=(FLAGS.max_trials if FLAGS["max_trials"].present or
                        FLAGS.tuner in ("random", "bayesian") else None),
            hyperband_factor=FLAGS.hyperband_factor,
            validation_examples=FLAGS.validation_examples,
            max_binary_macs=FLAGS.max_binary_macs, max_packed_bytes=FLAGS.max_packed_bytes,
            report=FLAGS.report, capacity=FLAGS.capacity, distributed=dist,
            stop_after=FLAGS.stop_after, max_retries_per_trial=FLAGS.max_retries_per_trial,
            max_consecutive_failures=FLAGS.max_consecutive_failures,
            lease_seconds=FLAGS.lease_seconds, heartbeat_seconds=FLAGS.heartbeat_seconds,
            timeout_seconds=FLAGS.timeout_seconds,
            transfer_attacks=tuple(FLAGS.transfer_attacks), transfer_limit=FLAGS.transfer_limit,
            command=common.command_line())
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None


def main(argv):
    common.show_errors_plainly()  # a flag error is one FATAL line, not the usage text
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    s = settings()
    if FLAGS.overwrite:
        if s.distributed.enabled:  # the chief would delete what the workers already use
            raise app.UsageError(
                "--overwrite is not supported in a distributed search (every process shares "
                f"{s.output_dir}); delete the earlier search's "
                f"{', '.join(tuning.OUTPUTS)} there first, or choose another "
                "--output_dir.")
        removed = tuning.remove_outputs(s.output_dir)
        if removed:
            print(f"--overwrite: removed {', '.join(removed)} of the earlier search in "
                  f"{s.output_dir}", flush=True)
    try:
        summary = tuning.run_search(s, progress=lambda line: print(line, flush=True))
    except (tuning.SearchTimeout, tuning.SearchStopped, tuning.SearchStateError) as e:
        raise SystemExit(f"tfdisc.experiments.tune: {e}") from None
    if summary is not None and summary["best_trial"] is None and (
            summary["search_finished"] or "stopped" in summary):
        raise SystemExit("tfdisc.experiments.tune: the search ended without a completed "
                         "trial; no model.keras was written.")


if __name__ == "__main__":
    common.set_defaults(**DEFAULTS)
    app.run(main)

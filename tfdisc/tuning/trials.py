"""The trials table a capacity search writes: ``trials.json``/``trials.csv``, Pareto front, plot.

``collect`` turns the oracle's trials (with the workers' records) into rows;
``pareto_front`` marks the trials no other beats on capacity and validation
adversarial accuracy; ``write_trials`` and ``plot_capacity`` write them.
"""
import csv
import os

from tfdisc import results
from tfdisc.tuning.oracle import is_skipped, read_trial_record

__all__ = ["CAPACITY_AXES", "collect", "pareto_front", "plot_capacity", "write_trials"]

CAPACITY_AXES = {"packed_bytes": "model size, packed (bytes)", "binary_macs": "binary MACs",
                 "macs": "MACs", "params": "parameters"}


def collect(oracle, project_dir):
    """Every trial of ``oracle`` as a dict (worker records merged), by trial id."""
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        record = read_trial_record(project_dir, trial_id) or {}
        values = trial.hyperparameters.values
        status = "skipped" if is_skipped(trial) else str(trial.status).lower()
        if status == "invalid":  # keras-tuner's state of a crashed trial in the retry queue
            status = "waiting_for_retry"
        row = {"trial_id": trial_id, "status": status,
               "hyperparameters": {k: values.get(k) for k in ("precision", "bits", "width",
                                                              "depth")}}
        for key in ("model", "params", "macs", "binary_macs", "packed_bytes", "epochs",
                    "train_seconds", "seed", "hyperband", "reason", "model_file"):
            if key in record:
                row[key] = record[key]
        attempts = getattr(oracle, "attempts", {}).get(trial_id)
        if attempts:  # who ran each attempt and how it ended (a retried trial ran twice)
            row["attempts"] = [{"attempt": i + 1, **a} for i, a in enumerate(attempts)]
        if status == "completed":
            val = dict(record.get("validation") or {})
            val["adversarial_accuracy"] = float(trial.score)
            rows.append({**row, "validation": val})
        else:
            if status != "skipped" and trial.message:
                row["message"] = trial.message.strip().splitlines()[-1][:500]
            rows.append(row)
    return rows


def pareto_front(rows, capacity="packed_bytes"):
    """Trial ids of the completed trials no other trial beats on both axes.

    A trial is dominated if another has at most its capacity and at least its
    validation adversarial accuracy, one of them strictly.
    """
    done = [r for r in rows if r["status"] == "completed" and capacity in r]
    front = []
    for r in done:
        c, a = r[capacity], r["validation"]["adversarial_accuracy"]
        if not any((o[capacity] <= c and o["validation"]["adversarial_accuracy"] >= a)
                   and (o[capacity] < c or o["validation"]["adversarial_accuracy"] > a)
                   for o in done):
            front.append(r["trial_id"])
    return front


def _csv_rows(rows, front, objective):
    test_keys = []
    for r in rows:
        test = r.get("test") or {}
        for prefix, block in (("test", test.get("attacks", {})),
                              ("test_transfer", test.get("transfer", {}))):
            for name, entry in block.items():
                for key in entry["adversarial_accuracy"]:
                    if f"{prefix}_{name}_eps{key}" not in test_keys:
                        test_keys.append(f"{prefix}_{name}_eps{key}")
    header = ["trial_id", "status", "precision", "bits", "width", "depth", "params", "macs",
              "binary_macs", "packed_bytes", "epochs", "train_seconds", "val_examples",
              "val_clean_accuracy",
              f"val_adversarial_accuracy_{objective['attack']}_eps{objective['eps_key']}",
              "pareto", "attempts", "workers", "test_examples", "test_clean_accuracy"] + test_keys
    out = [header]
    for r in rows:
        val = r.get("validation") or {}
        test = r.get("test") or {}
        cells = {"trial_id": r["trial_id"], "status": r["status"], **r["hyperparameters"],
                 "params": r.get("params"), "macs": r.get("macs"),
                 "binary_macs": r.get("binary_macs"), "packed_bytes": r.get("packed_bytes"),
                 "epochs": r.get("epochs"), "train_seconds": r.get("train_seconds"),
                 "val_examples": val.get("examples"),
                 "val_clean_accuracy": val.get("clean_accuracy"),
                 header[14]: val.get("adversarial_accuracy"),
                 "pareto": r["trial_id"] in front,
                 "attempts": len(r["attempts"]) if r.get("attempts") else None,
                 "workers": ";".join(a["worker"] for a in r.get("attempts") or ()) or None,
                 "test_examples": test.get("examples"),
                 "test_clean_accuracy": test.get("clean_accuracy")}
        for prefix, block in (("test", test.get("attacks", {})),
                              ("test_transfer", test.get("transfer", {}))):
            for name, entry in block.items():
                for key, value in entry["adversarial_accuracy"].items():
                    cells[f"{prefix}_{name}_eps{key}"] = value
        out.append(["" if cells.get(h) is None else cells.get(h) for h in header])
    return out


def write_trials(output_dir, summary):
    """``trials.json`` and ``trials.csv`` (atomic JSON; CSV one row per trial)."""
    results.write_json(os.path.join(output_dir, "trials.json"), summary)
    tmp = os.path.join(output_dir, f".trials.{os.getpid()}.csv")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(_csv_rows(summary["trials"], summary["pareto_front"],
                                          summary["objective"]))
    os.replace(tmp, os.path.join(output_dir, "trials.csv"))


def plot_capacity(rows, front, path, *, capacity, objective, data_note):
    """PNG of validation adversarial accuracy against capacity, Pareto front marked."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    done = [r for r in rows if r["status"] == "completed"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"full": "o", "binary": "s", "xnor": "^"}
    groups = sorted({(r["hyperparameters"]["precision"], r["hyperparameters"]["bits"])
                     for r in done})
    for precision, bits in groups:
        pts = [r for r in done if (r["hyperparameters"]["precision"],
                                   r["hyperparameters"]["bits"]) == (precision, bits)]
        ax.scatter([max(r[capacity], 1) for r in pts],
                   [r["validation"]["adversarial_accuracy"] for r in pts],
                   marker=markers.get(precision, "o"), label=f"{precision} {bits}b", alpha=0.8)
    pts = sorted((r for r in done if r["trial_id"] in front), key=lambda r: r[capacity])
    if pts:
        ax.step([max(r[capacity], 1) for r in pts],
                [r["validation"]["adversarial_accuracy"] for r in pts], where="post",
                color="k", lw=1, label="Pareto front")
        ax.scatter([max(r[capacity], 1) for r in pts],
                   [r["validation"]["adversarial_accuracy"] for r in pts], s=140,
                   facecolors="none", edgecolors="k")
    ax.set_xscale("log")
    ax.set_xlabel(CAPACITY_AXES[capacity] + " (log scale)")
    ax.set_ylabel("validation adversarial accuracy")
    ax.set_title(f"{objective['attack'].upper()} ε={objective['eps']:g}, gradient "
                 f"{objective['params'].get('gradient', 'straight_through')}; {data_note}",
                 fontsize=8)
    ax.grid(alpha=0.3)
    if done:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

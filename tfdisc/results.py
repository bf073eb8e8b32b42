"""The ``results.json`` schema: building a run's record, writing it safely, printing it.

One record per experiment run. The experiment binaries write it
(``tfdisc.pipeline``) and ``tfdisc.experiments.report`` reads it back
(``load``). Keys, in the order written:

* what ran: ``dataset``, ``model``, ``precision``, ``bits``, ``epochs``,
  ``seed``, ``width``, ``depth``, ``batch_size``, ``learning_rate``,
  ``schedule`` (one readable line), ``adv_train`` and ``adv_train_params``;
* how it was attacked: ``attack`` (the primary attack), ``attack_params``,
  ``gradient`` (the quantizer gradient the attacker used), and ``attacks``:
  one entry per attack with its parameters as the attack registry describes
  them, ``examples``, ``clean_accuracy``, ``adversarial_accuracy`` (ε key →
  accuracy, keys from ``epsilon_key``) and ``zero_gradient_fraction``;
* ``clean_accuracy`` and ``adversarial_accuracy`` of the primary attack;
* ``transfer`` (black-box source, if any) and ``straight_through_check`` (the
  same weights attacked through the quantizer, for ``gradient=none`` runs);
* ``data`` (source, train/test examples), ``init_from``, ``command``,
  ``train_seconds``, ``eval_seconds``, ``tfdisc_version``.

Paths in a record are portable: relative to the record's own directory (see
``portable_path``), never a machine's absolute path.
"""
import fractions
import json
import os
import shlex

__all__ = ["REQUIRED_KEYS", "attack_entry", "epsilon_key", "find_json", "format_table", "load",
           "parse_epsilon", "portable_command", "portable_path", "write_json"]

REQUIRED_KEYS = ("dataset", "model", "precision", "bits", "clean_accuracy",
                 "adversarial_accuracy")


def parse_epsilon(text):
    """'0.1' → 0.1, '8/255' → 0.0313…; raises ValueError for bad or negative values."""
    text = str(text).strip()
    try:
        value = float(fractions.Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"Bad epsilon {text!r}: expected a number like 0.1 or a fraction like "
                         "8/255.") from None
    if value < 0:
        raise ValueError(f"Epsilon must be ≥ 0, got {text!r}.")
    return value


def epsilon_key(value):
    """Stable string key of ε for results.json (e.g. '0.1', '0.03137255')."""
    return f"{value:.7g}"


def portable_path(path, base):
    """``path`` relative to the directory ``base`` (e.g. ``../fcn2_full_8b``).

    None and non-path sources (``"tensorflow-datasets"``) pass through.
    """
    if not path or path == "tensorflow-datasets":
        return path
    return os.path.relpath(os.path.abspath(path), os.path.abspath(base))


def portable_command(argv, program, cwd=None):
    """The command line ``program argv…`` with absolute paths made relative to ``cwd``."""
    cwd = os.path.abspath(cwd or os.getcwd())

    def rel(arg):
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            return f"{name}={rel(value)}" if os.path.isabs(value) else arg
        return os.path.relpath(arg, cwd) if os.path.isabs(arg) else arg

    return " ".join([program] + [shlex.quote(rel(a)) for a in argv])


def attack_entry(record, sweep_result, epsilons, top_k=(1,)):
    """One ``attacks`` entry: ``record`` (the attack's parameters) plus its sweep results."""
    entry = dict(record)
    entry.update(
        examples=sweep_result["examples"],
        clean_accuracy=sweep_result["top1"][0.0],
        adversarial_accuracy=_by_key(sweep_result["top1"], epsilons),
        zero_gradient_fraction=sweep_result["zero_gradient_fraction"],
    )
    if 5 in top_k:
        entry["top5"] = {"clean_accuracy": sweep_result["top5"][0.0],
                         "adversarial_accuracy": _by_key(sweep_result["top5"], epsilons)}
    return entry


def epsilon_dict(accuracies, epsilons):
    """``{eps: accuracy}`` (float keys, 0 = clean) as ``{epsilon_key: accuracy}`` without 0."""
    return _by_key(accuracies, epsilons)


def _by_key(accuracies, epsilons):
    return {epsilon_key(e): accuracies[e] for e in sorted(set(epsilons)) if e != 0.0}


def write_json(path, obj):
    """Writes ``obj`` as JSON atomically: a reader sees the old file or the whole new one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def format_table(record):
    """A human-readable table of one results record (every attack as a column)."""
    attacks = record.get("attacks") or {record["attack"]: {
        "adversarial_accuracy": record["adversarial_accuracy"]}}
    names = list(attacks)
    adv = record.get("adv_train_params")
    lines = [
        f"{record['dataset']} {record['model']} precision={record['precision']} "
        f"bits={record['bits']} gradient={record['gradient']} "
        f"adv_train={'%s eps=%.4g' % (adv['method'], adv['eps']) if adv else False} "
        f"test examples={record['data']['test_examples']}",
        f"{'eps':>12} | " + " | ".join(f"{n:>8}" for n in names),
        f"{'0 (clean)':>12} | " + " | ".join(f"{record['clean_accuracy']:8.4f}" for _ in names),
    ]
    keys = list(record["adversarial_accuracy"])
    for key in keys:
        cells = [attacks[n]["adversarial_accuracy"].get(key) for n in names]
        lines.append(f"{key:>12} | " + " | ".join(
            f"{c:8.4f}" if c is not None else f"{'-':>8}" for c in cells))
    if record.get("transfer"):
        t = record["transfer"]
        lines.append(f"transfer from {t['source_model']} ({t['attack']}): " + ", ".join(
            f"{k}: {v:.4f}" for k, v in t["adversarial_accuracy"].items()))
    if record.get("top5"):
        lines.append("top-5: clean %.4f, " % record["top5"]["clean_accuracy"] + ", ".join(
            f"{k}: {v:.4f}" for k, v in record["top5"]["adversarial_accuracy"].items()))
    return "\n".join(lines)


def find_json(results_dir, name):
    """``(path relative to results_dir, parsed JSON)`` of every readable file ``name`` below it.

    Walked in sorted order; unreadable or malformed files are skipped.
    """
    for root, _, files in sorted(os.walk(results_dir)):
        if name not in files:
            continue
        path = os.path.join(root, name)
        try:
            with open(path) as f:
                obj = json.load(f)
        except (OSError, ValueError):
            continue
        yield os.path.relpath(path, results_dir), obj


def load(results_dir):
    """Every valid results.json under ``results_dir``, each with its path in ``_path``.

    Records missing a required key, or unreadable files, are skipped. Records
    from before the ``attacks`` block get one built from their primary attack.
    """
    records = []
    for path, rec in find_json(results_dir, "results.json"):
        if not all(k in rec for k in REQUIRED_KEYS):
            continue
        rec["_path"] = path
        rec.setdefault("attacks", {rec.get("attack", "fgsm"): {
            "name": rec.get("attack", "fgsm"), "gradient": rec.get("gradient"),
            "clean_accuracy": rec["clean_accuracy"],
            "adversarial_accuracy": rec["adversarial_accuracy"],
            "examples": rec.get("data", {}).get("test_examples")}})
        records.append(rec)
    return records

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
  accuracy, keys from ``epsilon_key``) and ``zero_gradient_fraction``; an
  ensemble's entry (``autoattack``) also has ``components``: component name →
  ``{examples, clean_accuracy, adversarial_accuracy}``, the accuracy after each
  component in the order run, on the same images (see ``COMPONENTS_MEANING``);
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
import math
import numbers
import os
import shlex

__all__ = ["COMPONENTS_MEANING", "REQUIRED_KEYS", "ResultsError", "attack_entry",
           "check_accuracy", "check_attacks",
           "check_record", "epsilon_key",
           "find_json", "format_table", "load", "parse_epsilon", "portable_command",
           "portable_path", "write_json"]

REQUIRED_KEYS = ("dataset", "model", "precision", "bits", "clean_accuracy",
                 "adversarial_accuracy")
COMPONENTS_MEANING = ("top-1 accuracy after each component ran, in this order, on the examples "
                      "no earlier one broke (cumulative, as the reference AutoAttack logs it); "
                      "the last is the ensemble's")


def parse_epsilon(text):
    """'0.1' → 0.1, '8/255' → 0.0313…; raises ValueError for bad or negative values."""
    text = str(text).strip()
    try:
        # float() reads 1e400 as inf at once; Fraction builds 10**400 (and hangs on 1e999999999).
        value = float(fractions.Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"Bad epsilon {text!r}: expected a number like 0.1 or a fraction like "
                         "8/255.") from None
    if not math.isfinite(value):
        raise ValueError(f"Epsilon must be a finite number, got {text!r}.")
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
    if sweep_result.get("stages"):
        entry["components"] = {
            name: {"examples": sweep_result["examples"], "clean_accuracy": acc[0.0],
                   "adversarial_accuracy": _by_key(acc, epsilons)}
            for name, acc in sweep_result["stages"].items()}
        entry["components_meaning"] = COMPONENTS_MEANING
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


class ResultsError(ValueError):
    """A results directory or file the report cannot use; the message names it and says why."""


def find_json(results_dir, name, skipped=None):
    """``(path relative to results_dir, parsed JSON)`` of every file ``name`` below it.

    Walked in sorted order. A file that cannot be read or parsed is appended to ``skipped`` as
    ``(relative path, reason)``; without a ``skipped`` list it raises :class:`ResultsError`
    naming the file. Nothing is left out silently.
    """
    unlisted = []  # directories os.walk could not list (it would skip them silently)
    for root, _, files in sorted(os.walk(results_dir, onerror=unlisted.append)):
        if name not in files:
            continue
        path = os.path.join(root, name)
        rel = os.path.relpath(path, results_dir)
        try:
            with open(path) as f:
                obj = json.load(f)
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            reason = f"not readable JSON ({type(e).__name__}: {e})"
            if skipped is None:
                raise ResultsError(f"{path}: {reason}") from None
            skipped.append((rel, reason))
            continue
        yield rel, obj
    for e in unlisted:
        reason = f"directory not listable, any {name} in it is not read ({e.strerror})"
        if skipped is None:
            raise ResultsError(f"{e.filename}: {reason}")
        skipped.append((os.path.relpath(e.filename, results_dir), reason))


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _Checker:
    """Type checks of one record; collects the non-finite accuracies it meets."""

    def __init__(self):
        self.nonfinite = []

    def fail(self, where, what, value):
        raise ValueError(f"`{where}` must be {what}, got {type(value).__name__} {value!r:.60}")

    def accuracy(self, where, value):
        if not _is_number(value):
            self.fail(where, "an accuracy (a number in [0, 1])", value)
        if math.isnan(value):
            self.nonfinite.append(where)
        elif not 0.0 <= value <= 1.0:
            self.fail(where, "an accuracy, a fraction in [0, 1] (not a percentage)", value)

    def by_eps(self, where, value):
        if not isinstance(value, dict):
            self.fail(where, "an object {epsilon: accuracy}", value)
        for key, acc in value.items():
            try:
                parse_epsilon(key)
            except ValueError as e:
                raise ValueError(f"`{where}`: {e}") from None
            self.accuracy(f"{where}.{key}", acc)

    def optional(self, where, value, kind, what):
        if value is not None and not (isinstance(value, kind) and not (
                kind is int and isinstance(value, bool))):
            self.fail(where, what, value)

    def attack(self, where, entry, require_clean=False):
        if not isinstance(entry, dict):
            self.fail(where, "an object", entry)
        if "adversarial_accuracy" not in entry:
            raise ValueError(f"`{where}` has no `adversarial_accuracy`")
        self.by_eps(f"{where}.adversarial_accuracy", entry["adversarial_accuracy"])
        if require_clean or entry.get("clean_accuracy") is not None:
            self.accuracy(f"{where}.clean_accuracy", entry.get("clean_accuracy"))
        self.optional(f"{where}.examples", entry.get("examples"), int, "an integer")
        zero = entry.get("zero_gradient_fraction")
        if zero is not None and not _is_number(zero):
            self.fail(f"{where}.zero_gradient_fraction", "a number", zero)
        prefixes = entry.get("prefixes")
        self.optional(f"{where}.prefixes", prefixes, dict, "an object {examples: record}")
        for n, part in (prefixes or {}).items():
            self.attack(f"{where}.prefixes.{n}", part)
        top5 = entry.get("top5")
        if top5 is not None:
            self.attack(f"{where}.top5", top5)
        components = entry.get("components")
        self.optional(f"{where}.components", components, dict,
                      "an object {component name: entry}")
        for n, part in (components or {}).items():
            self.attack(f"{where}.components.{n}", part)


def check_attacks(block, where="attacks"):
    """Checks an ``{attack name: entry}`` block (``attacks`` of results.json, ``test.attacks``
    of trials.json): each entry's accuracies, ε keys, ``examples`` and ``prefixes``.

    Returns the NaN accuracies as dotted key paths; raises ValueError naming a wrong key.
    """
    c = _Checker()
    if not isinstance(block, dict):
        c.fail(where, "an object {attack name: entry}", block)
    for name, entry in block.items():
        c.attack(f"{where}.{name}", entry)
    return c.nonfinite


def check_accuracy(value, where):
    """Raises ValueError unless ``value`` is an accuracy in [0, 1]; True if it is NaN."""
    c = _Checker()
    c.accuracy(where, value)
    return bool(c.nonfinite)


def check_record(rec):
    """Checks the types of the keys a results.json record is read by; returns the non-finite
    (NaN) accuracies found, as dotted key paths, which readers must treat as "no data".

    Raises ValueError saying which key is wrong (a hand-edited, truncated or future-schema file).
    """
    c = _Checker()
    if not isinstance(rec, dict):
        c.fail("(top level)", "an object", rec)
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)}")
    for key in ("dataset", "model", "precision"):
        if not isinstance(rec[key], str):
            c.fail(key, "a string", rec[key])
    if not isinstance(rec["bits"], int) or isinstance(rec["bits"], bool) or rec["bits"] < 1:
        c.fail("bits", "a positive integer", rec["bits"])
    for key in ("epochs", "width", "depth", "seed"):
        c.optional(key, rec.get(key), int, "an integer")
    for key in ("gradient", "command", "init_from", "attack"):
        c.optional(key, rec.get(key), str, "a string")
    c.optional("adv_train", rec.get("adv_train"), bool, "true or false")
    c.accuracy("clean_accuracy", rec["clean_accuracy"])
    c.by_eps("adversarial_accuracy", rec["adversarial_accuracy"])
    adv = rec.get("adv_train_params")
    c.optional("adv_train_params", adv, dict, "an object")
    # R-FGSM mixes adversarial examples into each batch (adv_ratio); IBP training has no mix.
    needed = ("eps",) if (adv or {}).get("method") == "ibp" else ("eps", "adv_ratio")
    for key in needed:
        if adv and not _is_number(adv.get(key)):
            c.fail(f"adv_train_params.{key}", "a number", adv.get(key))
    attacks = rec.get("attacks")
    c.optional("attacks", attacks, dict, "an object {attack name: entry}")
    for name, entry in (attacks or {}).items():
        c.attack(f"attacks.{name}", entry)
    transfer = rec.get("transfer")
    if transfer:
        c.attack("transfer", transfer, require_clean=True)
        for key in ("source_model", "source_gradient", "attack"):
            if not isinstance(transfer.get(key), str):
                c.fail(f"transfer.{key}", "a string", transfer.get(key))
    cert = rec.get("certified")
    c.optional("certified", cert, dict, "an object")
    if cert:
        for key in ("certified", "counterexample"):
            if cert.get(key) is not None:
                c.by_eps(f"certified.{key}", cert[key])
        c.optional("certified.examples", cert.get("examples"), int, "an integer")
        c.optional("certified.method", cert.get("method"), dict, "an object")
    check = rec.get("straight_through_check")
    c.optional("straight_through_check", check, dict, "an object {attack name: entry}")
    for name, entry in (check or {}).items():
        c.attack(f"straight_through_check.{name}", entry)
    data = rec.get("data")
    c.optional("data", data, dict, "an object")
    for key in ("train_examples", "test_examples"):
        c.optional(f"data.{key}", (data or {}).get(key), int, "an integer")
    c.optional("data.source", (data or {}).get("source"), str, "a string")
    top5 = rec.get("top5")
    if top5 is not None:
        c.attack("top5", top5, require_clean=True)
    return c.nonfinite


def load(results_dir, skipped=None):
    """Every valid results.json under ``results_dir``, each with its path in ``_path``.

    A file that cannot be parsed, misses a required key or has a key of the wrong type is
    appended to ``skipped`` as ``(relative path, reason)``; without a ``skipped`` list it raises
    :class:`ResultsError` naming the file. A missing ``results_dir`` raises ResultsError.
    Records with NaN accuracies are kept, with those keys listed in ``_nonfinite`` (no data).
    Records from before the ``attacks`` block get one built from their primary attack.
    """
    if not os.path.isdir(results_dir):
        raise ResultsError(f"results directory {results_dir!r} does not exist (or is not a "
                           "directory); pass --results_dir=DIR, the directory holding the runs' "
                           "results.json files.")
    records = []
    for path, rec in find_json(results_dir, "results.json", skipped):
        try:
            nonfinite = check_record(rec)
        except ValueError as e:
            if skipped is None:
                raise ResultsError(f"{os.path.join(results_dir, path)}: {e}") from None
            skipped.append((path, str(e)))
            continue
        rec["_path"] = path
        if nonfinite:
            rec["_nonfinite"] = nonfinite
        rec.setdefault("attacks", {rec.get("attack", "fgsm"): {
            "name": rec.get("attack", "fgsm"), "gradient": rec.get("gradient"),
            "clean_accuracy": rec["clean_accuracy"],
            "adversarial_accuracy": rec["adversarial_accuracy"],
            "examples": (rec.get("data") or {}).get("test_examples")}})
        records.append(rec)
    return records

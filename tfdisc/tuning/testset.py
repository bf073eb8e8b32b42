"""Test-set figures of a capacity search's reported trials: white-box attacks and transfer.

Only the trials a search reports (``--report``) are evaluated on the test set, from their saved
models. Figures a previous run of the same search stored in ``trials.json`` are reused when they
were made the same way, and ``checkpoint()`` is called after every attack, so an interrupted
evaluation (an FCN1 attack takes tens of minutes) resumes where it stopped.
"""
import dataclasses
import json
import os

from tfdisc import evaluate, pipeline, results

__all__ = ["evaluate_reported"]


# What identifies a trial's model in trials.json: a row left by another search (its
# search/ deleted by hand, trials.json kept) may carry the same trial id.
_SAME_TRIAL = ("hyperparameters", "seed", "epochs", "model_file", "validation")


def _previous_tests(output_dir, rows):
    """{trial id: test block} of the trials.json a previous run of this search wrote, for
    the trials of ``rows`` that are the same trials (same model, same validation figures)."""
    path = os.path.join(output_dir, "trials.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            old = {r["trial_id"]: r for r in json.load(f).get("trials", []) if r.get("test")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # unreadable: evaluate again
    now = json.loads(json.dumps(rows))  # as the rows read back from trials.json
    return {r["trial_id"]: old[r["trial_id"]]["test"] for r in now if r["trial_id"] in old
            and all(old[r["trial_id"]].get(k) == r.get(k) for k in _SAME_TRIAL)}


def _same_evaluation(previous, wanted):
    """Whether a stored attacks entry was made exactly as ``wanted`` would be."""
    if previous is None:
        return False
    keys = set(wanted) - {"adversarial_accuracy", "clean_accuracy", "zero_gradient_fraction"}
    return (all(previous.get(k) == wanted[k] for k in keys)
            and set(previous.get("adversarial_accuracy", {})) == set(
                wanted["adversarial_accuracy"]))


def _trial_config(settings, row):
    return dataclasses.replace(settings.base, **{
        k: row["hyperparameters"][k] for k in ("precision", "bits", "width", "depth")})


def _expected_entry(name, model, cfg, examples):
    """The attack-describing fields an entry of ``name`` on ``model`` would have."""
    record = evaluate.attack_record(name, model, **cfg.attack_params.get(name, {}))
    limit = cfg.attack_limits.get(name)
    entry = {**record, "examples": min(examples, limit) if limit else examples,
             "adversarial_accuracy": {results.epsilon_key(e): None for e in cfg.epsilons}}
    return json.loads(json.dumps(entry))  # as it would read back from trials.json


def evaluate_reported(settings, rows, ids, x_test, y_test, *, progress=print,
                      checkpoint=lambda: None):
    """Stores ``row["test"]`` for every row whose trial id is in ``ids``.

    White-box attacks of ``settings.base`` on each trial, then black-box transfer between
    precision twins (``settings.transfer_attacks``).
    """
    models = _RecentModels(settings)
    _attack_reported(settings, rows, ids, x_test, y_test, progress, checkpoint, models)
    _transfer_twins(settings, rows, ids, x_test, y_test, progress, checkpoint, models)


class _RecentModels:
    """Loads trial models, keeping the last two: a trial's test evaluation and then the
    transfer to and from its twin (the next trial) load each model once, not three times."""

    def __init__(self, settings):
        self._project_dir = settings.project_dir
        self._models = {}

    def get(self, row):
        path = os.path.join(self._project_dir, row["model_file"])
        if path not in self._models:
            if len(self._models) == 2:
                del self._models[next(iter(self._models))]
            self._models[path] = pipeline.load_model(path, f"trial {row['trial_id']}")
        else:  # most recently used last
            self._models[path] = self._models.pop(path)
        return self._models[path]


def _attack_reported(settings, rows, ids, x_test, y_test, progress=print,
                       checkpoint=lambda: None, models=None):
    """Test-set figures of the reported trials only (their saved models).

    Figures a previous run of the same search stored in ``trials.json`` are
    reused when they were made by the same attacks on the same examples, so a
    rerun (e.g. to add ``transfer_attacks``) does not repeat them. After each
    attack ``checkpoint()`` stores what is done, so an interrupted evaluation
    (an FCN1 attack takes tens of minutes) resumes where it stopped.
    """
    previous = _previous_tests(settings.output_dir, rows)
    models = models or _RecentModels(settings)
    for row in rows:
        if row["trial_id"] not in ids:
            continue
        model = models.get(row)
        cfg = _trial_config(settings, row)
        old = (previous.get(row["trial_id"]) or {}).get("attacks", {})
        entries = {}
        transfer = (previous.get(row["trial_id"]) or {}).get("transfer")
        for name in cfg.attacks:
            if _same_evaluation(old.get(name), _expected_entry(name, model, cfg, len(y_test))):
                entries[name] = old[name]
                progress(f"test: trial {row['trial_id']} {name} reused from trials.json")
                continue
            entries.update(pipeline.evaluate_attacks(model, cfg, x_test, y_test, top_k=(1,),
                                                     attacks=[name]))
            row["test"] = _test_block(entries, len(y_test), transfer)
            checkpoint()
        row["test"] = _test_block(entries, len(y_test), transfer)


def _test_block(entries, examples, transfer):
    first = next(iter(entries.values()))
    block = {"examples": examples, "clean_accuracy": first["clean_accuracy"],
             "attacks": dict(entries)}
    if transfer:
        block["transfer"] = transfer
    return block


def _twin(rows, row, ids):
    """The reported trial with ``row``'s width, depth and bits but the other precision."""
    hp = row["hyperparameters"]
    for other in rows:
        ohp = other["hyperparameters"]
        if (other["trial_id"] in ids and other["trial_id"] != row["trial_id"]
                and ohp["precision"] != hp["precision"]
                and all(ohp[k] == hp[k] for k in ("width", "depth", "bits"))):
            return other
    return None


def _transfer_twins(settings, rows, ids, x_test, y_test, progress=print,
                    checkpoint=lambda: None, models=None):
    """Black-box transfer between precision twins (e.g. BNN and full precision, same width).

    For every reported trial whose twin is reported too, each attack of
    ``settings.transfer_attacks`` crafts examples on the twin (through the
    twin's own quantizer gradient) and the trial's accuracy on them is
    stored under ``row["test"]["transfer"][attack]``, on the first
    ``settings.transfer_limit`` test examples when that is set. Stored
    figures made the same way are reused.
    """
    models = models or _RecentModels(settings)
    for row in rows:
        twin = _twin(rows, row, ids) if row["trial_id"] in ids else None
        if twin is None or not settings.transfer_attacks:
            continue
        source = models.get(twin)
        model = models.get(row)
        cfg = _trial_config(settings, row)
        if settings.transfer_limit:  # transfer on the first N test examples only
            cfg = dataclasses.replace(cfg, attack_limits={
                name: min(settings.transfer_limit, cfg.attack_limits.get(name) or len(y_test))
                for name in settings.transfer_attacks})
        stored = row["test"].get("transfer", {})
        out = {}
        for name in settings.transfer_attacks:
            wanted = {**_expected_entry(name, source, cfg, len(y_test)),
                      "source_trial": twin["trial_id"]}
            if _same_evaluation(stored.get(name), wanted):
                out[name] = stored[name]
                continue
            progress(f"transfer: trial {row['trial_id']} {name} from trial {twin['trial_id']} "
                     f"({twin['hyperparameters']['precision']})")
            entry = pipeline.evaluate_attacks(model, cfg, x_test, y_test, attack_model=source,
                                              top_k=(1,), attacks=[name])[name]
            out[name] = {**entry, "source_trial": twin["trial_id"],
                         "source_model": source.name,
                         "crafted_on": "the twin trial's model (white-box on the source, "
                                       "black-box on this trial)"}
            row["test"]["transfer"] = {**stored, **out}
            checkpoint()
        row["test"]["transfer"] = out

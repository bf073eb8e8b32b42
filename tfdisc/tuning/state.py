"""The state of a capacity search on disk: its identity, its checks on a rerun, its outputs.

A search records the settings that decide its trials (``search_identity``) in
``search/tfdisc_search.json``. A rerun on the same output directory resumes it
only with the same such settings and only if every state file reads back
(``check_search``); otherwise it is refused with the setting or the file named,
never silently mixed with or reported as the old search. ``remove_outputs`` is
``--overwrite``: it deletes everything an earlier search wrote.
"""
import glob
import json
import os
import shutil

from tfdisc.tuning.oracle import TRIAL_RECORD

__all__ = ["OUTPUTS", "PROJECT", "SEARCH_RECORD", "SearchStateError", "check_search",
           "remove_outputs", "search_identity"]

PROJECT = "search"  # keras-tuner's project directory inside the output directory
SEARCH_RECORD = "tfdisc_search.json"  # in PROJECT: the settings that decide the trials
OUTPUTS = (PROJECT, "logs", "trials.json", "trials.csv", "capacity.png", "model.keras")
# Fields of the base pipeline.Config that decide how a trial is trained.
_TRAINING_KEYS = ("dataset", "model", "gradient", "epochs", "batch_size", "learning_rate",
                  "seed", "train_limit")


class SearchStateError(ValueError):
    """The search in an output directory cannot be resumed as asked (other settings, corrupt
    state); the message says which file or setting, and what to do."""


def search_identity(settings):
    """The settings that decide a search's trials, keyed by the names of the ``tune`` flags.

    Left out, so a rerun may change them: how long to search (``max_trials``,
    ``stop_after``), distribution and fault tolerance, the test-set evaluation
    and report, and the data directory's path (the same data may sit at other
    paths on the machines of a distributed search).
    """
    objective, base = settings.objective, settings.base
    ident = {"tuner": settings.tuner,
             **{f"{k}_space": v for k, v in settings.space.describe().items()},
             "objective_attack": objective.attack, "objective_eps": objective.eps,
             "objective_params": dict(objective.params),
             "validation_examples": settings.validation_examples,
             "max_binary_macs": settings.max_binary_macs,
             "max_packed_bytes": settings.max_packed_bytes,
             **{k: getattr(base, k) for k in _TRAINING_KEYS}}
    if settings.tuner == "hyperband":
        ident["hyperband_factor"] = settings.hyperband_factor
    return json.loads(json.dumps(ident))  # as it reads back from the record


def _project_dir(settings):
    return os.path.join(settings.output_dir, PROJECT)


def _state_files(settings):
    """The JSON files a resumed search of this process reads (existing or not)."""
    dist, project = settings.distributed, _project_dir(settings)
    files = [os.path.join(project, SEARCH_RECORD),
             os.path.join(project, f"{dist.tuner_id or 'tuner0'}.json")]
    if dist.enabled and not dist.is_chief:
        return files  # a worker reloads only its own state; the chief owns the rest
    files.append(os.path.join(project, "oracle.json"))
    for trial_dir in sorted(glob.glob(os.path.join(project, "trial_*"))):
        files += [os.path.join(trial_dir, "trial.json"),
                  os.path.join(trial_dir, TRIAL_RECORD)]
    return files


def check_search(settings, *, progress=print):
    """Checks the search already in ``settings.output_dir``, or records a new one.

    A new search records ``search_identity(settings)``; a rerun resumes only a search
    recorded with the same identity, whose state files all read back.

    Raises:
      SearchStateError: the directory holds a training run, a search made with other
        settings, or a search whose state is corrupt (a truncated file); the message
        names the settings or the file and how to start over.
    """
    out, project = settings.output_dir, _project_dir(settings)
    if os.path.exists(os.path.join(out, "results.json")):
        raise SearchStateError(f"{out} holds a training run (results.json), not a capacity "
                               "search; choose another --output_dir.")
    again = (f"Start over with --overwrite (it deletes the search in {out}) or choose "
             "another --output_dir.")
    tuner_file, oracle_file = _state_files(settings)[1], os.path.join(project, "oracle.json")
    for path in _state_files(settings):
        if not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                json.load(f)
        except (OSError, ValueError) as e:
            raise SearchStateError(f"The search state file {path} cannot be read ({e}): it "
                                   f"is truncated or corrupt, so the search cannot be "
                                   f"resumed. {again}") from None
    if (not settings.distributed.enabled or settings.distributed.is_chief) and \
            not os.path.exists(oracle_file) and (
                os.path.exists(tuner_file) or glob.glob(os.path.join(project, "trial_*"))):
        raise SearchStateError(f"The search in {project} has no oracle.json (it was deleted "
                               f"or never written), so it cannot be resumed. {again}")
    os.makedirs(project, exist_ok=True)
    wanted = search_identity(settings)
    recorded = _record_once(os.path.join(project, SEARCH_RECORD), wanted)
    if recorded is None:
        if os.path.exists(oracle_file):
            progress(f"warning: the search in {project} was made before tfdisc recorded a "
                     "search's settings; resuming it as if it had been made with these flags.")
        return
    differ = [k for k in sorted(set(wanted) | set(recorded)) if wanted.get(k) != recorded.get(k)]
    if differ:
        def show(v):
            return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v
        changes = "; ".join(f"--{k}: {show(recorded.get(k))} in the search, {show(wanted.get(k))} "
                            "now" for k in differ)
        raise SearchStateError(
            f"{out} holds a search made with other settings ({changes}). Its trials were not "
            f"made the way this command asks, so it is not resumed. Rerun with the search's "
            f"own settings to resume it. {again}")


def _record_once(path, obj):
    """Writes ``obj`` to ``path`` unless it exists (atomic, race-free); returns the
    record already there, or None if this call wrote it."""
    tmp = f"{path}.{os.getpid()}.new"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    try:
        os.link(tmp, path)  # fails if another process recorded the search first
        return None
    except FileExistsError:
        with open(path) as f:
            return json.load(f)
    finally:
        os.remove(tmp)


def remove_outputs(output_dir):
    """Deletes what a search wrote in ``output_dir`` (``OUTPUTS``); returns the names removed.

    A directory that holds no search (no ``search/`` and no ``trials.json``) is left alone.
    """
    if not any(os.path.exists(os.path.join(output_dir, n)) for n in (PROJECT, "trials.json")):
        return []
    removed = []
    for name in OUTPUTS:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        else:
            continue
        removed.append(name)
    return removed

"""A run's lifecycle (issue 26): nothing is lost to a kill, an overwrite or a foreign backup.

Kills are simulated by an exception raised at the moment of the kill (nothing in a run cleans up
on an exception, as nothing would on SIGKILL); tests/experiments/distribute_test.py kills real
processes.
"""
import json
import logging
import os

import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from tfdisc import pipeline, results, run_dir
from tfdisc.experiments import mnist

TINY = dict(model="fcn2", width=16, depth=1, epochs=2, batch_size=64, eval_batch_size=128,
            verbose="0", epsilons=["0.1"], train_limit=128, test_limit=64, save_model=True)


class Killed(Exception):
    """Stands for a SIGKILL at the point where it is raised."""


def run(**kwargs):
    with flagsaver.flagsaver(**{**TINY, **kwargs}):
        mnist.main(["mnist"])
    return _results(kwargs["output_dir"])


def _results(directory):
    with open(os.path.join(directory, "results.json")) as f:
        return json.load(f)


def _cfg(data_dir, **kwargs):
    return pipeline.Config(**{**dict(dataset="mnist", model="fcn2", width=16, depth=1, bits=2,
                                     epochs=2, batch_size=64, train_limit=128, test_limit=64,
                                     epsilons=(0.1,), verbose=0, data_dir=data_dir), **kwargs})


class KillAtEpoch(tf.keras.callbacks.Callback):
    """Kills training as epoch ``epoch`` (0-based) begins: the earlier epochs are backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed(f"killed at epoch {epoch + 1}")


def _killed_in_training(cfg, output_dir):
    out = run_dir.prepare_output_dir(output_dir, config=cfg.identity())
    with pytest.raises(Killed):
        pipeline.run(cfg, out, callbacks=[KillAtEpoch(1)])
    return out


def _weights(path):
    return run_dir.load_model(path).get_weights()


# 1. --overwrite never deletes the model the run is about to read.

def test_overwrite_refuses_to_delete_its_own_init_from(synthetic_mnist, tmp_path):
    out = str(tmp_path / "x")
    run(bits=2, data_dir=synthetic_mnist, output_dir=out)
    before = {f: open(os.path.join(out, f), "rb").read() for f in ("model.keras", "results.json")}
    for init in (out, os.path.join(out, "model.keras")):
        with pytest.raises(flags.ValidationError, match="--overwrite would delete"):
            run(bits=2, epochs=0, init_from=init, data_dir=synthetic_mnist, output_dir=out,
                overwrite=True)
    for name, data in before.items():  # nothing was deleted or changed
        assert open(os.path.join(out, name), "rb").read() == data
    # The same re-evaluation into another directory works.
    again = run(bits=2, epochs=0, init_from=out, data_dir=synthetic_mnist,
                output_dir=str(tmp_path / "again"))
    assert again["clean_accuracy"] == _results(out)["clean_accuracy"]


def test_overwrite_refuses_to_delete_its_own_transfer_source(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "model.keras").write_bytes(b"a model")
    (out / "results.json").write_text("{}")
    cfg = {"init_from": None, "transfer_from": str(out)}
    with pytest.raises(run_dir.OutputDirError, match="--transfer_from.*would delete"):
        run_dir.prepare_output_dir(str(out), overwrite=True, config=cfg)
    assert (out / "model.keras").read_bytes() == b"a model"
    # An input elsewhere does not stop --overwrite.
    run_dir.prepare_output_dir(str(out), overwrite=True, config={"init_from": str(tmp_path / "y")})
    assert not (out / "model.keras").exists()


# 2 and 3. Killed during evaluation, or right after results.json: nothing trained is lost.

def test_killed_during_evaluation_reruns_only_the_evaluation(synthetic_mnist, tmp_path,
                                                             monkeypatch, capfd):
    out = str(tmp_path / "run")
    evaluate = pipeline.evaluate_attacks

    def killed(*args, **kwargs):
        raise Killed("killed during evaluation")

    monkeypatch.setattr(pipeline, "evaluate_attacks", killed)
    with pytest.raises(Killed):
        run(bits=2, data_dir=synthetic_mnist, output_dir=out)
    # The trained model was saved before the evaluation; the run is unfinished, not lost.
    assert os.path.isfile(os.path.join(out, "model.keras"))
    assert not os.path.exists(os.path.join(out, "results.json"))
    trained = _weights(out)

    calls = []
    monkeypatch.setattr(pipeline, "evaluate_attacks",
                        lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    monkeypatch.setattr(pipeline, "train", _no_epoch_may_run(pipeline.train))
    capfd.readouterr()
    rec = run(bits=2, data_dir=synthetic_mnist, output_dir=out)  # the same command
    assert calls and "Training had finished" in capfd.readouterr().out
    assert rec["resumed"]["from_epoch"] == 2 and "only the evaluation" in rec["resumed"]["note"]
    for a, b in zip(trained, _weights(out)):
        assert (a == b).all()
    assert not os.path.exists(os.path.join(out, "backup"))  # discarded once results are written


def _no_epoch_may_run(train):
    def checked(model, cfg, x_train, y_train, callbacks=(), strategy=None):
        class NoEpoch(tf.keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                raise AssertionError(f"epoch {epoch + 1} was trained again")

        return train(model, cfg, x_train, y_train, list(callbacks) + [NoEpoch()], strategy)
    return checked


def test_killed_right_after_results_json_leaves_a_complete_run(synthetic_mnist, tmp_path,
                                                               monkeypatch):
    out = str(tmp_path / "run")
    write_json = results.write_json

    def then_killed(path, obj):
        write_json(path, obj)
        if path.endswith("results.json"):
            raise Killed("killed right after results.json")

    monkeypatch.setattr(results, "write_json", then_killed)
    with pytest.raises(Killed):
        run(bits=2, data_dir=synthetic_mnist, output_dir=out)
    # results.json marks a finished run: the model is there too.
    assert os.path.isfile(os.path.join(out, "results.json"))
    run_dir.load_model(out)


# 4. A backup belongs to one configuration.

def test_another_runs_backup_is_refused_and_kept(synthetic_mnist, tmp_path):
    backup = str(tmp_path / "shared_backup")
    _killed_in_training(_cfg(synthetic_mnist, backup_dir=backup), str(tmp_path / "a"))
    assert tf.train.latest_checkpoint(os.path.join(backup, "chief"))
    other = _cfg(synthetic_mnist, bits=4, backup_dir=backup)
    out = run_dir.prepare_output_dir(str(tmp_path / "b"), config=other.identity())
    with pytest.raises(pipeline.BackupError, match=r"belongs to another run \(fcn2 full 2b.*"
                                                   r"than this one \(fcn2 full 4b.*bits=2"):
        pipeline.run(other, out)
    assert tf.train.latest_checkpoint(os.path.join(backup, "chief"))  # not deleted
    assert not os.path.exists(os.path.join(out, "results.json"))
    # The run it belongs to still resumes from it.
    rec = pipeline.run(_cfg(synthetic_mnist, backup_dir=backup), str(tmp_path / "a"))
    assert rec["resumed"]["from_epoch"] == 1 and not os.path.exists(backup)


def test_unset_later_limits_keep_an_older_runs_identity(synthetic_mnist):
    """An unset --search_test_limit / --autoattack_test_limit resumes runs made before them."""
    old = _cfg(synthetic_mnist, attack_limits={"pgd": None})
    new = _cfg(synthetic_mnist, attack_limits={"pgd": None, "quantized_search": None,
                                                "autoattack": None, "apgd_ce": None})
    assert new.identity() == old.identity()
    limited = _cfg(synthetic_mnist, attack_limits={"pgd": None, "autoattack": 100})
    assert limited.identity() != old.identity()


# 5. init_from must match the flags' input bits, model and precision.

@pytest.mark.parametrize("flags_, match", [
    (dict(bits=8), "quantizes its input to 2 bits, but this run has bits=8"),
    (dict(bits=2, precision="xnor"), "precision binary.*precision=xnor")])
def test_init_from_of_other_bits_or_precision_is_refused(synthetic_mnist, tmp_path, flags_,
                                                         match):
    # Same weight shapes: before these checks, set_weights accepted them silently.
    source = str(tmp_path / "source")
    run(bits=2, precision="binary", data_dir=synthetic_mnist, output_dir=source, epochs=1)
    with pytest.raises(flags.ValidationError, match=match):
        run(epochs=0, init_from=source, data_dir=synthetic_mnist,
            output_dir=str(tmp_path / "again"), **{"precision": "binary", **flags_})
    assert not os.path.exists(tmp_path / "again" / "results.json")


# 6. A truncated backup: a clear error naming it and how to discard it.

def test_truncated_backup_names_itself_and_how_to_discard_it(synthetic_mnist, tmp_path):
    cfg = _cfg(synthetic_mnist)
    out = _killed_in_training(cfg, str(tmp_path / "run"))
    chief = os.path.join(out, "backup", "chief")
    data = [f for f in os.listdir(chief) if ".data-" in f]
    assert data
    for name in data:
        path = os.path.join(chief, name)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    backup = os.path.join(out, "backup")
    with pytest.raises(pipeline.BackupError, match=(
            f"backup '{backup}' is unreadable.*rm -r {backup}")):
        pipeline.run(cfg, out)
    run_dir.discard_backup(backup)  # what the message says to do
    assert pipeline.run(cfg, out)["resumed"] is None


# 7. The resume message is printed once.

def test_resume_message_is_printed_once(synthetic_mnist, tmp_path, capsys):
    cfg = _cfg(synthetic_mnist)
    out = _killed_in_training(cfg, str(tmp_path / "run"))
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = tf.get_logger()  # in the binaries it prints INFO twice (its handler and absl's)
    level = logger.level
    logger.setLevel("INFO")
    logger.addHandler(handler)
    capsys.readouterr()
    try:
        rec = pipeline.run(cfg, out)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    shown = capsys.readouterr().out.splitlines() + logged
    assert [line for line in shown if "Resumed from the backup" in line] == [
        "Resumed from the backup: continuing at epoch 2."]
    assert rec["resumed"]["from_epoch"] == 1


# Neighbours: a partial export of an unfinished run is redone whole.

def test_a_partial_export_of_the_same_run_is_replaced(synthetic_mnist, tmp_path):
    cfg = _cfg(synthetic_mnist, export=("saved_model",), epochs=1)
    out = run_dir.prepare_output_dir(str(tmp_path / "run"), config=cfg.identity())
    stale = os.path.join(out, "export", "stale_partial_file")
    os.makedirs(os.path.dirname(stale))
    open(stale, "w").close()
    rec = pipeline.run(cfg, out)
    assert not os.path.exists(stale)
    assert os.path.isdir(os.path.join(out, rec["export"]["saved_model"]))


def test_certify_refuses_an_unsupported_model_before_training(synthetic_mnist, tmp_path,
                                                             monkeypatch):
    """--certify on a model the certifier cannot bound stops before any epoch, not after."""
    from tfdisc import certify  # pylint: disable=import-outside-toplevel

    def unsupported(cfg, gradient=None):
        del cfg, gradient
        inputs = tf.keras.Input((28, 28, 1))
        x = tf.keras.layers.Reshape((28, 28))(inputs)
        x = tf.keras.layers.Conv1D(4, 3)(x)  # no bound rule
        x = tf.keras.layers.Flatten()(x)
        return tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x))

    monkeypatch.setattr(pipeline, "build_model", unsupported)
    cfg = _cfg(synthetic_mnist, certify=True)
    out = run_dir.prepare_output_dir(str(tmp_path / "c"), config=cfg.identity())
    with pytest.raises(certify.UnsupportedLayerError, match="Conv1D"):
        pipeline.run(cfg, out, callbacks=[KillAtEpoch(0)])  # KillAtEpoch: no epoch may start


def test_certify_method_exact_refuses_a_model_it_cannot_encode_before_training(synthetic_mnist,
                                                                               tmp_path):
    """--certify_method=exact with a solver that does not encode the model (SAT on a
    full-precision ReLU model) stops before any epoch; an unknown solver or method is a Config
    error."""
    from tfdisc import certify  # pylint: disable=import-outside-toplevel

    cfg = _cfg(synthetic_mnist, certify=True, certify_method="exact", certify_solver="sat")
    out = run_dir.prepare_output_dir(str(tmp_path / "c"), config=cfg.identity())
    with pytest.raises(certify.UnsupportedLayerError, match="'sat' does not encode relu"):
        pipeline.run(cfg, out, callbacks=[KillAtEpoch(0)])
    for bad in ({"certify_method": "sat"}, {"certify_solver": "cplex"},
                {"certify_time_limit": 0.0}, {"certify_time_limit": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            _cfg(synthetic_mnist, certify=True, **bad)


def test_certified_training_with_data_edges_resumes_from_its_backup(synthetic_mnist, tmp_path):
    """Killed after epoch 1 of 2, IBP training resumes from the backup and finishes with the
    quantizer edges it chose from the data (issue 30); a fresh run chooses the same edges."""
    cfg = _cfg(synthetic_mnist, bits=1, certified_train=True, train_eps=0.3, input_edges="data")
    out = _killed_in_training(cfg, str(tmp_path / "run"))
    assert os.path.isdir(os.path.join(out, "backup"))
    rec = pipeline.run(cfg, out)
    assert rec["resumed"]["from_epoch"] == 1
    assert rec["adv_train_params"]["method"] == "ibp" and rec["adv_train_params"]["eps"] == 0.3
    assert rec["quantizer"]["name"] == "custom_edges"
    edges = rec["quantizer"]["edges"]
    assert list(run_dir.load_model(out).layers[1].edges) == edges
    fresh = pipeline.run(cfg, run_dir.prepare_output_dir(str(tmp_path / "fresh"),
                                                         config=cfg.identity()))
    assert fresh["quantizer"]["edges"] == edges

"""mnist binary: smoke test on real data, adversarial training, transfer, masking, flag errors."""
import json
import os

import pytest
import tensorflow as tf
from absl import flags
from absl.testing import flagsaver

from tfdisc import models
from tfdisc.experiments import common, mnist

KEYS = ("dataset", "model", "precision", "bits", "epochs", "seed", "attack", "gradient",
        "adv_train", "clean_accuracy", "adversarial_accuracy", "train_seconds")
TINY = dict(model="fcn2", width=32, epochs=1, batch_size=64, eval_batch_size=128, verbose="0",
            epsilons=["0.1", "0.2", "0.3"], save_model=False)


def run(**kwargs):
    with flagsaver.flagsaver(**{**TINY, **kwargs}):
        mnist.main(["mnist"])
    with open(os.path.join(kwargs["output_dir"], "results.json")) as f:
        return json.load(f)


def test_binary_2b_one_short_epoch_on_real_data(mnist_dir, tmp_path):
    rec = run(precision="binary", bits=2, data_dir=mnist_dir, output_dir=str(tmp_path),
              width=64, learning_rate=0.01, train_limit=4096, test_limit=256, attack=["fgsm", "pgd"], pgd_steps=3)
    assert all(k in rec for k in KEYS)
    assert (rec["dataset"], rec["precision"], rec["bits"], rec["attack"]) == (
        "mnist", "binary", 2, "fgsm")
    assert rec["gradient"] == "straight_through" and rec["adv_train"] is False
    assert set(rec["adversarial_accuracy"]) == {"0.1", "0.2", "0.3"}
    assert rec["clean_accuracy"] > 0.5
    pgd = rec["attacks"]["pgd"]
    assert pgd["steps"] == 3 and pgd["gradient"] == "straight_through" and pgd["examples"] == 256
    for key in ("0.1", "0.2", "0.3"):
        assert 0.0 <= pgd["adversarial_accuracy"][key] <= rec["clean_accuracy"]
    assert os.path.isfile(tmp_path / "flags.json")
    assert "fgsm" in common.format_table(rec) and "pgd" in common.format_table(rec)


def test_adv_train_transfer_and_saved_model(synthetic_mnist, tmp_path):
    source = str(tmp_path / "source")
    run(data_dir=synthetic_mnist, output_dir=source, save_model=True)
    assert os.path.isfile(os.path.join(source, "model.keras"))
    rec = run(precision="xnor", bits=2, adv_train=True, data_dir=synthetic_mnist,
              output_dir=str(tmp_path / "target"), transfer_from=source, attack=["pgd"],
              pgd_steps=2, pgd_step_size="1/10")
    assert rec["adv_train"] is True
    assert rec["adv_train_params"] == {"method": "rfgsm", "eps": 0.3, "alpha": 0.15,
                                       "adv_ratio": 0.5, "gradient": "straight_through"}
    assert rec["attack_params"]["step_size"] == pytest.approx(0.1)
    t = rec["transfer"]
    assert t["source_model"] == "fcn2_full_8b" and t["source_gradient"] == "straight_through"
    assert set(t["adversarial_accuracy"]) == {"0.1", "0.2", "0.3"}


def test_search_and_certify_limits_record_like_with_like(synthetic_mnist, tmp_path):
    """QS and --certify on the first N images; FGSM (all images) records its first-N accuracy."""
    rec = run(bits=2, data_dir=synthetic_mnist, output_dir=str(tmp_path), test_limit=60,
              attack=["fgsm", "quantized_search"], search_test_limit=20, certify=True,
              certify_test_limit=20)
    fgsm, qs = rec["attacks"]["fgsm"], rec["attacks"]["quantized_search"]
    assert fgsm["examples"] == 60 and qs["examples"] == 20 and rec["certified"]["examples"] == 20
    first = fgsm["prefixes"]["20"]
    assert first["examples"] == 20 and first["clean_accuracy"] == qs["clean_accuracy"]
    assert set(first["adversarial_accuracy"]) == {"0.1", "0.2", "0.3"}
    assert "prefixes" not in qs and "seconds" not in rec["attack_params"]
    assert fgsm["seconds"] >= 0 and rec["certified"]["seconds"] >= 0
    cert = rec["certified"]
    assert cert["method"]["candidates"] == ["fgsm", "quantized_search"]
    for key in ("0.1", "0.2", "0.3"):  # certified ≤ any attack on the same images
        best = min(first["adversarial_accuracy"][key], qs["adversarial_accuracy"][key])
        assert cert["certified"][key] <= best
        # Every attack success on those images is one of the certifier's counterexamples.
        assert 1.0 - cert["counterexample"][key] <= best + 1e-9
        assert sum(cert["decided_by"][key].values()) == 20


def test_autoattack_limit_applies_to_the_family_only(synthetic_mnist, tmp_path):
    """--autoattack_test_limit cuts APGD-CE to the first N; FGSM records those N too."""
    rec = run(bits=2, data_dir=synthetic_mnist, output_dir=str(tmp_path), test_limit=40,
              attack=["fgsm", "apgd_ce"], autoattack_test_limit=15, epsilons=["0.1"])
    fgsm, ce = rec["attacks"]["fgsm"], rec["attacks"]["apgd_ce"]
    assert fgsm["examples"] == 40 and ce["examples"] == 15
    assert fgsm["prefixes"]["15"]["clean_accuracy"] == ce["clean_accuracy"]


def test_gradient_none_is_checked_with_straight_through(synthetic_mnist, tmp_path):
    rec = run(bits=2, gradient="none", data_dir=synthetic_mnist, output_dir=str(tmp_path))
    assert rec["gradient"] == "none"
    assert rec["attacks"]["fgsm"]["zero_gradient_fraction"] == 1.0
    check = rec["straight_through_check"]["fgsm"]
    assert check["gradient"] == "straight_through" and check["zero_gradient_fraction"] < 1.0


def test_transfer_source_with_other_input_shape(synthetic_mnist, tmp_path):
    other = models.build("fcn2", input_shape=(32, 32, 3), width=8)
    path = str(tmp_path / "cifar_model.keras")
    other.save(path)
    with pytest.raises(flags.ValidationError, match="shape"):
        run(data_dir=synthetic_mnist, output_dir=str(tmp_path / "out"), transfer_from=path)
    with pytest.raises(flags.ValidationError, match="no saved model"):
        run(data_dir=synthetic_mnist, output_dir=str(tmp_path / "out"),
            transfer_from=str(tmp_path / "missing"))


class TestFlags:
    @pytest.mark.parametrize("text, value", [("0.1", 0.1), ("8/255", 8 / 255), (" 16/255 ", 16 / 255),
                                             ("0", 0.0)])
    def test_parse_epsilon(self, text, value):
        assert common.parse_epsilon(text) == pytest.approx(value)

    @pytest.mark.parametrize("text", ["-0.1", "abc", "1/0", "-8/255"])
    def test_parse_epsilon_errors(self, text):
        with pytest.raises(ValueError):
            common.parse_epsilon(text)

    def test_epsilon_key(self):
        assert common.epsilon_key(8 / 255) == "0.03137255"
        assert common.epsilon_key(0.1) == "0.1"

    @pytest.mark.parametrize("name, value", [
        ("attack", ["cw"]), ("attack", ["fgsm", "deepfool"]), ("epsilons", ["-0.1"]),
        ("epsilons", ["8/"]), ("pgd_steps", 0), ("pgd_step_size", "0"), ("train_eps", "-1"),
        ("adv_ratio", 1.5)])
    def test_bad_flag_values(self, name, value):
        with pytest.raises(flags.IllegalFlagValueError):
            with flagsaver.flagsaver(**{name: value}):
                pass

    def test_train_eps_defaults(self):
        with flagsaver.flagsaver(train_eps=None):
            assert common.train_eps("mnist") == 0.3
            assert common.train_eps("cifar10") == pytest.approx(8 / 255)
        with flagsaver.flagsaver(train_eps="4/255"):
            assert common.train_eps("cifar10") == pytest.approx(4 / 255)

    def test_stray_arguments(self, tmp_path):
        from absl import app  # pylint: disable=import-outside-toplevel
        with flagsaver.flagsaver(output_dir=str(tmp_path)):
            with pytest.raises(app.UsageError):
                mnist.main(["mnist", "extra"])

    def test_binary_conflicts_with_precision(self, synthetic_mnist, tmp_path):
        with flagsaver.flagsaver(**TINY, binary=True, precision="xnor", data_dir=synthetic_mnist,
                                 output_dir=str(tmp_path)):
            flags.FLAGS["precision"].present = 1
            try:
                with pytest.raises(flags.ValidationError, match="conflicts"):
                    mnist.main(["mnist"])
            finally:
                flags.FLAGS["precision"].present = 0


def test_tf_is_legacy_keras():
    assert tf.keras.__name__.startswith("tf_keras") or "tf_keras" in tf.keras.__file__


def test_init_from_re_evaluates_a_saved_model(synthetic_mnist, tmp_path):
    source = str(tmp_path / "source")
    first = run(bits=2, data_dir=synthetic_mnist, output_dir=source, save_model=True)
    again = run(bits=2, epochs=0, gradient="none", init_from=source, data_dir=synthetic_mnist,
                output_dir=str(tmp_path / "again"))
    assert again["clean_accuracy"] == first["clean_accuracy"]
    # Paths are recorded relative to the run's own directory (never a machine's absolute path).
    assert again["init_from"] == "../source" and again["schedule"].startswith("weights from")
    assert str(tmp_path) not in json.dumps({k: v for k, v in again.items() if k != "command"})
    # Same weights: the straight-through check reproduces the first run's FGSM numbers.
    assert again["straight_through_check"]["fgsm"]["adversarial_accuracy"] == \
        first["adversarial_accuracy"]
    with pytest.raises(flags.ValidationError, match="does not match"):
        run(bits=2, epochs=0, width=16, init_from=source, data_dir=synthetic_mnist,
            output_dir=str(tmp_path / "bad"))


class TestOutputDirectory:
    def test_refuses_a_directory_holding_a_run(self, synthetic_mnist, tmp_path):
        run(bits=2, data_dir=synthetic_mnist, output_dir=str(tmp_path), save_model=True)
        before = open(tmp_path / "results.json").read()
        with pytest.raises(flags.ValidationError, match="already holds a finished run.*--overwrite"):
            run(bits=4, data_dir=synthetic_mnist, output_dir=str(tmp_path))
        # Nothing of the refused run was written beside the old one.
        assert open(tmp_path / "results.json").read() == before
        with open(tmp_path / "flags.json") as f:
            assert json.load(f)["bits"] == 2

    def test_overwrite_replaces_every_old_file(self, synthetic_mnist, tmp_path):
        run(bits=2, data_dir=synthetic_mnist, output_dir=str(tmp_path), save_model=True)
        rec = run(bits=4, data_dir=synthetic_mnist, output_dir=str(tmp_path), overwrite=True)
        assert rec["bits"] == 4
        assert not os.path.exists(tmp_path / "model.keras")  # the bits-2 model is gone
        with open(tmp_path / "flags.json") as f:
            assert json.load(f)["bits"] == 4

    def test_unwritable_output_dir(self, synthetic_mnist, tmp_path):
        (tmp_path / "a_file").write_text("x")
        with pytest.raises(flags.ValidationError, match="cannot be written|not a directory"):
            run(data_dir=synthetic_mnist, output_dir=str(tmp_path / "a_file" / "out"))

    def test_default_output_dir_is_fresh_per_run(self, synthetic_mnist, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        with flagsaver.flagsaver(**TINY, data_dir=synthetic_mnist, output_dir=None):
            first = mnist.main(["mnist"])
            second = mnist.main(["mnist"])
        assert first is None and second is None  # app.run-style main
        assert os.path.isfile(tmp_path / "runs" / "mnist_fcn2_full_8b" / "results.json")
        assert os.path.isfile(tmp_path / "runs" / "mnist_fcn2_full_8b_1" / "results.json")


class TestRejectedRuns:
    def test_epochs_zero_needs_init_from(self, synthetic_mnist, tmp_path):
        with pytest.raises(flags.ValidationError, match="untrained"):
            run(epochs=0, data_dir=synthetic_mnist, output_dir=str(tmp_path))
        assert not os.listdir(tmp_path)

    @pytest.mark.parametrize("name", ["train_limit", "test_limit", "pgd_test_limit",
                                      "search_test_limit", "autoattack_test_limit",
                                      "certify_test_limit"])
    @pytest.mark.parametrize("value", [0, -1])
    def test_bad_limits(self, name, value):
        with pytest.raises(flags.IllegalFlagValueError, match=name):
            with flagsaver.flagsaver(**{name: value}):
                pass

    def test_init_from_a_file_that_is_no_model(self, synthetic_mnist, tmp_path):
        bogus = tmp_path / "model.keras"
        bogus.write_bytes(b"not a model")
        with pytest.raises(flags.ValidationError, match="not a .keras model file"):
            run(epochs=0, init_from=str(bogus), data_dir=synthetic_mnist,
                output_dir=str(tmp_path / "out"))

    def test_h5_models_are_not_loaded(self, synthetic_mnist, tmp_path):
        """A legacy .h5 file can run code when loaded (a Lambda layer): refused, nothing runs."""
        marker = tmp_path / "ran"
        inputs = tf.keras.Input((28, 28, 1))
        outputs = tf.keras.layers.Lambda(
            lambda x, m=str(marker): (open(m, "w").close(), x)[1])(inputs)
        path = tmp_path / "evil.h5"
        tf.keras.Model(inputs, outputs).save(path)
        marker.unlink(missing_ok=True)
        with pytest.raises(flags.ValidationError, match="only the .keras format"):
            run(epochs=0, init_from=str(path), data_dir=synthetic_mnist,
                output_dir=str(tmp_path / "out"))
        assert not marker.exists()


def test_certified_training_and_certification(synthetic_mnist, tmp_path):
    rec = run(bits=2, certified_train=True, certify=True, train_eps="0.1", epochs=2,
              attack=["fgsm", "quantized_search"], data_dir=synthetic_mnist,
              output_dir=str(tmp_path), certify_time_limit=0.5)  # the ReLU MILP (auto): short
    assert rec["certified"]["method"]["exact"]["encoding"] == "relu"
    assert rec["adv_train_params"]["method"] == "ibp"
    certified = rec["certified"]["certified"]
    assert set(certified) == {"0", "0.1", "0.2", "0.3"} or set(certified) >= {"0.1", "0.2", "0.3"}
    search = rec["attacks"]["quantized_search"]
    assert search["gradient"] == "not used"
    for key in ("0.1", "0.2", "0.3"):
        # Certified accuracy is a lower bound of every attack's accuracy.
        assert certified[key] <= search["adversarial_accuracy"][key] + 1e-9
        assert certified[key] <= rec["attacks"]["fgsm"]["adversarial_accuracy"][key] + 1e-9


def test_one_bit_edges_from_data_certified_training(synthetic_mnist, tmp_path):
    """--input_edges=data: the edge is chosen from the training images at --train_eps, the saved
    model carries it, results.json names the quantizer, and certification uses its box."""
    out = str(tmp_path / "edges")
    rec = run(bits=1, input_edges=["data"], certified_train=True, certify=True, train_eps="0.3",
              epochs=1, data_dir=synthetic_mnist, output_dir=out, save_model=True,
              certify_method="branch", test_limit=40)
    q = rec["quantizer"]
    assert q["name"] == "custom_edges" and q["bits"] == 1 and len(q["edges"]) == 1
    assert q["chosen_from"].startswith("training images") and "0.3" in q["chosen_from"]
    assert 64 < q["edges"][0] < 192
    saved = tf.keras.models.load_model(os.path.join(out, "model.keras"), compile=False)
    assert list(saved.layers[1].edges) == q["edges"]
    assert set(rec["certified"]["certified"]) >= {"0.1", "0.2", "0.3"}
    # Re-evaluating those weights needs the same quantizer: eq. 2 is refused, naming both.
    with pytest.raises(flags.ValidationError, match="bin edges"):
        run(bits=1, epochs=0, init_from=out, data_dir=synthetic_mnist,
            output_dir=str(tmp_path / "eq2"))
    again = run(bits=1, epochs=0, init_from=out, input_edges=[str(e) for e in q["edges"]],
                data_dir=synthetic_mnist, output_dir=str(tmp_path / "again"), test_limit=40)
    assert again["quantizer"]["chosen_from"] == "given"
    assert again["clean_accuracy"] == rec["clean_accuracy"]
    plain = run(bits=1, data_dir=synthetic_mnist, output_dir=str(tmp_path / "plain"),
                test_limit=40)
    assert plain["quantizer"] == {"name": "eq2", "bits": 1}


@pytest.mark.parametrize("edges, message", [
    (["100"], "must hold 3 edge"), (["a", "b", "c"], "'data' or comma-separated numbers"),
    (["90", "30", "200"], "increasing"), (["300", "301", "302"], r"\(0, 255\]")])
def test_bad_input_edges_are_named(synthetic_mnist, tmp_path, edges, message):
    with pytest.raises(flags.ValidationError, match=message):
        run(bits=2, input_edges=edges, data_dir=synthetic_mnist, output_dir=str(tmp_path))


def test_crown_ibp_certified_training(synthetic_mnist, tmp_path):
    rec = run(bits=1, certified_train=True, certified_train_bounds="crown_ibp", train_eps="0.3",
              epochs=2, data_dir=synthetic_mnist, output_dir=str(tmp_path / "crown"),
              test_limit=40)
    params = rec["adv_train_params"]
    assert params["method"] == "ibp" and params["bounds"] == "crown_ibp"
    assert params["crown_beta"] == [1.0, 0.0]
    with pytest.raises((flags.ValidationError, ValueError), match="crown_ibp.*full-precision"):
        run(bits=1, precision="binary", certified_train=True, certified_train_bounds="crown_ibp",
            data_dir=synthetic_mnist, output_dir=str(tmp_path / "bnn"), test_limit=40)


def test_mtl_ibp_certified_training(synthetic_mnist, tmp_path):
    rec = run(bits=1, certified_train=True, certified_train_mix="adversarial", train_eps="0.3",
              epochs=2, data_dir=synthetic_mnist, output_dir=str(tmp_path / "mtl"),
              test_limit=40)
    params = rec["adv_train_params"]
    assert params["method"] == "ibp" and params["adversary"]["attack"] == "rfgsm"
    plain = run(bits=1, certified_train=True, train_eps="0.3", epochs=1,
                data_dir=synthetic_mnist, output_dir=str(tmp_path / "ibp"), test_limit=40)
    assert "adversary" not in plain["adv_train_params"]
    with pytest.raises((flags.IllegalFlagValueError, flags.ValidationError),
                       match="certified_train_mix"):
        run(bits=1, certified_train=True, certified_train_mix="noisy",
            data_dir=synthetic_mnist, output_dir=str(tmp_path / "bad"))


def test_recertify_with_attacks_reuses_the_rows_attacks(synthetic_mnist, tmp_path):
    """experiments/scripts/recertify.py --attacks: the row's attacks re-run on its certified
    images give the certifier counterexamples; the saved model must be the row's."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    out = tmp_path / "row"
    rec = run(bits=2, data_dir=synthetic_mnist, output_dir=str(out), test_limit=40,
              attack=["fgsm", "pgd"], pgd_steps=3, certify=True, certify_test_limit=20,
              save_model=True, certify_method="branch")
    assert "candidates" in rec["certified"]["method"]
    results_path = out / "results.json"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cmd = [sys.executable, os.path.join(root, "experiments", "scripts", "recertify.py"),
           f"--run_dir={out}", f"--results={results_path}", f"--data_dir={synthetic_mnist}",
           "--method=branch", "--attacks"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    block = json.loads(results_path.read_text())["certified"]
    assert block["method"]["candidates"] == ["fgsm", "pgd"]
    assert block["recertified"]["command"].endswith("--attacks")
    first = rec["attacks"]["fgsm"]["prefixes"]["20"]["adversarial_accuracy"]
    for key, acc in first.items():  # FGSM is deterministic: its successes are counterexamples
        assert 1.0 - block["counterexample"][key] <= acc + 1e-9
        assert block["certified"][key] == rec["certified"]["certified"][key]

"""The description of one experiment run: ``Config``, a plain validated dataclass.

What the experiment binaries' flags turn into (``tfdisc.experiments.common``),
and what a keras-tuner ``build(hp)`` or a script can make directly; every
value is checked when the Config is made, before anything is trained or
written. ``tfdisc.pipeline`` runs it (and re-exports it as
``tfdisc.pipeline.Config``).
"""
import dataclasses
import os
from typing import Optional, Tuple

from tfdisc import attacks as attacks_lib
from tfdisc import checks
from tfdisc import data as data_lib
from tfdisc import distribution, models, quantize, training

__all__ = ["Config"]


def _positive_or_none(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"`{name}` must be a positive integer or None, got {value!r}.")
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs. Defaults are the MNIST binary's.

    ``attack_params`` maps an attack name to its parameters (see
    ``tfdisc.attacks.get(name).params``), e.g. ``{"pgd": {"steps": 7}}``.
    ``attack_limits`` maps an attack name to the number of test examples it
    runs on (e.g. PGD on the first 1000 only); ``certify_limit`` the number that
    ``certify`` certifies.
    """

    dataset: str
    model: str = "fcn2"
    precision: str = "full"
    bits: int = 8
    width: Optional[int] = None
    depth: Optional[int] = None
    gradient: str = "straight_through"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    train_limit: Optional[int] = None
    test_limit: Optional[int] = None
    data_dir: Optional[str] = None
    epsilons: Tuple[float, ...] = (0.1, 0.2, 0.3)
    attacks: Tuple[str, ...] = ("fgsm",)
    attack_params: dict = dataclasses.field(default_factory=dict)
    attack_limits: dict = dataclasses.field(default_factory=dict)
    eval_batch_size: int = 500
    top_k: Tuple[int, ...] = (1,)
    adv_train: bool = False
    train_eps: Optional[float] = None
    adv_ratio: float = 0.5
    init_from: Optional[str] = None
    transfer_from: Optional[str] = None
    save_model: bool = True
    verbose: object = "auto"
    distribute: str = "none"
    connect_timeout: float = 120.0
    backup: bool = True
    backup_dir: Optional[str] = None
    export: Tuple[str, ...] = ()
    export_input_dtype: str = "float32"
    export_float_weights: str = "float32"
    certify: bool = False
    certify_limit: Optional[int] = None
    certify_method: str = "auto"
    certify_solver: str = "milp"
    certify_time_limit: float = 10.0
    certified_train: bool = False
    # None (eq. 2), the quantizer's custom bin edges, or "data": edges chosen from the
    # training images (tfdisc.quantize.edges_from_data) at train_eps, else the largest ε.
    input_edges: object = None
    certified_train_bounds: str = "ibp"  # or "crown_ibp" (tfdisc.certify.CertifiedTraining)
    # The κ term of certified training: "clean" (Gowal et al.) or "adversarial" (R-FGSM
    # images, MTL-IBP: tfdisc.training.RfgsmAdversary).
    certified_train_mix: str = "clean"

    def __post_init__(self):
        data_lib.info(self.dataset)
        models.spec(self.model)
        if self.precision not in models.PRECISIONS:
            raise ValueError(f"`precision` must be one of {models.PRECISIONS}, got "
                             f"{self.precision!r}.")
        quantize.check_bits(self.bits)
        quantize.check_gradient(self.gradient)
        if isinstance(self.input_edges, str):
            if self.input_edges != "data":
                raise ValueError(f"`input_edges` must be None, \"data\" or {2**self.bits - 1} "
                                 f"bin edges, got {self.input_edges!r}.")
        else:
            object.__setattr__(self, "input_edges",
                               quantize.check_edges(self.input_edges, self.bits))
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"`epochs` must be an integer ≥ 0, got {self.epochs!r}.")
        if self.epochs == 0 and not self.init_from:
            raise ValueError("`epochs` is 0 but no `init_from` model is given: that would "
                             "evaluate an untrained model. Train (epochs ≥ 1) or pass a trained "
                             "model to re-evaluate.")
        for name in ("batch_size", "eval_batch_size"):
            if _positive_or_none(getattr(self, name), name) is None:
                raise ValueError(f"`{name}` must be a positive integer, got None.")
        for name in ("train_limit", "test_limit", "width", "depth", "certify_limit"):
            _positive_or_none(getattr(self, name), name)
        if not 0 < self.learning_rate < float("inf"):
            raise ValueError(f"`learning_rate` must be a finite number > 0, got "
                             f"{self.learning_rate!r}.")
        if not self.attacks:
            raise ValueError("`attacks` must name at least one attack.")
        for name in self.attacks:
            attacks_lib.get(name).check_params(**self.attack_params.get(name, {}))
        for name, limit in self.attack_limits.items():
            attacks_lib.get(name)
            _positive_or_none(limit, f"attack_limits[{name!r}]")
        for eps in self.epsilons:
            checks.check_eps(eps, "epsilons")
        if self.train_eps is not None:
            checks.check_eps(self.train_eps, "train_eps")
        if not 0.0 <= self.adv_ratio <= 1.0:
            raise ValueError(f"`adv_ratio` must be in [0, 1], got {self.adv_ratio!r}.")
        if self.distribute not in distribution.KINDS:
            raise ValueError(f"`distribute` must be one of {distribution.KINDS}, got "
                             f"{self.distribute!r}.")
        if self.certified_train_bounds not in ("ibp", "crown_ibp"):
            raise ValueError(f"`certified_train_bounds` must be 'ibp' or 'crown_ibp', got "
                             f"{self.certified_train_bounds!r}.")
        if self.certified_train_mix not in training.CERTIFIED_TRAIN_MIXES:
            raise ValueError(f"`certified_train_mix` must be one of "
                             f"{training.CERTIFIED_TRAIN_MIXES}, got {self.certified_train_mix!r}.")
        if self.adv_train and self.certified_train:
            raise ValueError("Choose one of `adv_train` (R-FGSM) and `certified_train` (IBP).")
        if self.export:
            from tfdisc import export as export_lib  # pylint: disable=import-outside-toplevel

            export_lib.parse_formats(self.export)
            if self.export_input_dtype not in export_lib.INPUT_DTYPES:
                raise ValueError(f"`export_input_dtype` must be one of {export_lib.INPUT_DTYPES}, "
                                 f"got {self.export_input_dtype!r}.")
            if self.export_float_weights not in export_lib.FLOAT_WEIGHTS:
                raise ValueError(f"`export_float_weights` must be one of "
                                 f"{export_lib.FLOAT_WEIGHTS}, got {self.export_float_weights!r}.")
            try:  # what export() checks before it writes: each format's input dtypes, extras
                export_lib.check_options(self.export, self.export_input_dtype,
                                         self.export_float_weights, caller="Config")
            except ImportError as e:  # a missing extra: found before training, not after
                raise ValueError(f"`export`: {e}") from None
        if self.certify_method not in ("auto", "exact", "branch"):
            raise ValueError(f"`certify_method` must be one of ('auto', 'exact', 'branch'), got "
                             f"{self.certify_method!r}.")
        if self.certify_solver not in ("milp", "sat"):
            raise ValueError(f"`certify_solver` must be one of ('milp', 'sat'), got "
                             f"{self.certify_solver!r}.")
        if not 0 < self.certify_time_limit < float("inf"):
            raise ValueError(f"`certify_time_limit` must be a finite number of seconds > 0, got "
                             f"{self.certify_time_limit!r}.")
        if not 0 < self.connect_timeout < float("inf"):
            raise ValueError(f"`connect_timeout` must be a finite number of seconds > 0, got "
                             f"{self.connect_timeout!r}.")

    def identity(self):
        """What must match for a run to resume another's backup (JSON-able)."""
        ignored = ("verbose", "connect_timeout", "backup_dir", "export", "export_input_dtype",
                   "export_float_weights", "certify_limit", "certify_method", "certify_solver",
                   "certify_time_limit")
        identity = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignored}
        # An unset limit added later (--search_test_limit, --autoattack_test_limit) keeps the
        # identity of older runs, so an unfinished run started before it still resumes.
        identity["attack_limits"] = {k: v for k, v in identity["attack_limits"].items()
                                     if k == "pgd" or v is not None}
        for name, default in (("certified_train_bounds", "ibp"),
                              ("certified_train_mix", "clean")):
            if identity[name] == default:  # the default, as before the option existed
                del identity[name]
        if identity["input_edges"] is None:  # likewise for eq. 2 runs made before custom edges
            del identity["input_edges"]
        elif not isinstance(identity["input_edges"], str):
            identity["input_edges"] = list(identity["input_edges"])
        return identity

    @property
    def model_width(self):
        return self.width or models.spec(self.model)["width"]

    @property
    def model_depth(self):
        return self.depth or models.spec(self.model)["depth"]

    @property
    def adversarial_eps(self):
        """R-FGSM ε of adversarial training: ``train_eps`` or the paper's default."""
        return training.adversarial_eps(self.dataset, self.train_eps)

    def default_output_dir(self, root="runs"):
        """``runs/<dataset>_<model>_<precision>_<bits>b``, readable and per configuration
        (``_edges`` for a custom-edge quantizer, ``_ibp`` / ``_advtrain`` for the training)."""
        suffix = "_edges" if self.input_edges is not None else ""
        if self.certified_train:
            suffix += "_mtlibp" if self.certified_train_mix == "adversarial" else "_ibp"
        suffix += "_advtrain" if self.adv_train else ""
        return os.path.join(root, f"{self.dataset}_{self.model}_{self.precision}_{self.bits}b"
                                  f"{suffix}")

"""The rung catalogue: one record per rung, everything the code knows of a rung before it runs.

A rung's module is ``adaptlab.rungs.<name>``; importing :mod:`adaptlab.rungs` registers every catalogued
rung. The study, the decision-driven allocator (`evaluate.adaptive`), the planner (`decide.plan`), the policy
and the report (`decide.policy.rung_info`), the model card and the pipeline (`ship/`), the study file and
the web app read these records; a new rung is a module under `adaptlab/rungs/` plus one record here
(its artifact is saved and loaded by its own ``FittedRung.export_artifact`` / ``Rung.load_artifact``).
This module imports nothing of adaptlab, so every stage may use it.

Example:
    >>> from adaptlab.rungs.ladder import LADDER, facts, kind
    >>> LADDER[:4], facts("lora").kind, facts("lora").step_cost, kind("refit")
    (('tfidf', 'static', 'probe', 'refit'), 'network', 0.95, 'shared')
    >>> facts("probe").short, facts("probe").position, kind("static")
    ('frozen probe', 2, 'cheap')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ["RungFacts", "LADDER_FACTS", "LADDER", "NETWORK_RUNGS", "CHEAP_RUNGS", "LABEL_TRAINED_ENCODER",
           "TRANSFER_BASELINES", "CHANGED_ENCODER", "RELATIVE_STEP_COST", "FROZEN", "KINDS", "COST_SHAPES",
           "FromCatalogue", "facts", "catalogued", "kind", "ladder_key", "default_rungs", "rungs_help"]

KINDS = ("cheap", "shared", "network")
# How a rung's cost grows: ``fit`` (a fit of seconds per seed, no training loop), ``distil`` (a one-time
# distillation of the encoder over its own vocabulary, then texts encoded ``encode_speedup`` times faster than
# the encoder and a fit per seed), ``refit`` (a one-time unsupervised training its seeds share), ``steps``
# (optimizer steps over texts), ``pairs`` (optimizer steps over text pairs, through sentence-transformers'
# trainer). The planner (`decide.plan`) costs a rung by its shape.
COST_SHAPES = ("fit", "distil", "refit", "steps", "pairs")


@dataclass(frozen=True)
class RungFacts:
    """What the whole program knows of a rung before it runs (one record per rung, in ladder order).

    Attributes:
        name: The rung's registry name (``--rungs``, the study file, the manifest of a shipped model).
        kind: ``cheap`` (seconds: all seeds up front), ``shared`` (trained once per study, reused by every
            seed: refit) or ``network`` (trains encoder weights per seed; can be screened at a reduced budget).
        label: What the rung is, in the decision's and the report's words.
        short: A two-word name (tables, the web app).
        words: The model card's description of a model this rung built.
        frozen: What stays frozen (the transfer note).
        trainable: What is trained (the transfer note).
        rerun: What a user needs to retrain it (the report's "who can rerun it").
        needs_engineer: Retraining it takes a deep-learning training loop (an ML engineer, a GPU).
        main_parameters: The parameters a user reaches for first (the web app shows these up front).
        cost_shape: How its cost grows (one of :data:`COST_SHAPES`).
        step_cost: Cost of one training step relative to a full fine-tune step (network rungs; LoRA and a
            partial unfreeze backpropagate through less of the network, LP-FT adds its linear probe, a
            SetFit step is ``batch_size`` text pairs, twice the texts of a fine-tune step).
        optimizer_share: Share of a full fine-tune's optimizer update one step of it costs (the calibration).
        encode_speedup: How many times faster than the encoder it encodes a text (cost shape ``distil``: the
            planner divides the encoder's calibrated seconds a text by it; ``bench/static_encode.py`` measures it).
        label_trained_encoder: Training updates encoder weights from the labels (the overfitting risk of a
            few thousand labels; the model card warns that a retrain runs a deep-learning loop).
        uses_encoder: Uses pretrained weights (False: the scratch baseline; the card says no license applies).
            The rung class's ``uses_encoder`` attribute reads it (:class:`FromCatalogue`).
        transfer_baseline: An adaptation scoring below it with bands apart is negative transfer (the
            report's flags and the diagnostics' signatures compare every adapted rung with these).
        needs_unlabeled: Needs unlabeled in-domain texts (offered by default only when there are some).
        few_labels_ok: A network rung made for few labels (SetFit's pairs multiply them): the planner keeps
            it below the policy's ``few_labels``, where it leaves the other network rungs out.
        requires: The optional module it needs, and the extra that installs it (``pip install 'adaptlab[extra]'``).
        default: In which default rung sets it is: ``always`` (a study without ``--rungs``), ``timed`` (a
            study with a time budget and no ``--rungs``) or ``never`` (only when named).
        retrain_as: The rung ``adaptlab retrain`` fits on the stored encoder (None: the rung itself, from
            the encoder it was shipped from).
        retrain_note: What the model card says about such a retrain.
    """

    name: str
    kind: str
    label: str
    short: str
    words: str
    frozen: str
    trainable: str
    rerun: str
    needs_engineer: bool = False
    main_parameters: tuple[str, ...] = ()
    cost_shape: str = "fit"
    step_cost: Optional[float] = None
    optimizer_share: float = 1.0
    encode_speedup: Optional[float] = None
    label_trained_encoder: bool = False
    uses_encoder: bool = True
    transfer_baseline: bool = False
    needs_unlabeled: bool = False
    few_labels_ok: bool = False
    requires: Optional[tuple[str, str]] = None
    default: str = "timed"
    retrain_as: Optional[str] = None
    retrain_note: str = ""
    position: int = field(default=-1, compare=False)

    @property
    def depth(self) -> int:
        """The ladder position (``rung_info``'s historical name for it)."""
        return self.position

    @property
    def changes_encoder(self) -> bool:
        """Its encoder's weights differ from the pretrained ones (trained from the labels, or refit on
        unlabeled texts): an adaptation, which the frozen probe is the reference of."""
        return self.label_trained_encoder or self.cost_shape == "refit"


_NET = "a deep-learning training loop (GPU recommended)"

# Simplest first. tfidf is the scratch baseline; static (the encoder distilled into token vectors, issue #32)
# and probe reuse the encoder frozen. setfit sits after the frozen
# rungs and before lora: its encoder learns from the labels, but only through a pair-similarity objective,
# and it predicts with the same logistic head as probe (issue #16).
_RECORDS = (
    RungFacts(
        "tfidf", "cheap", "TF-IDF + logistic regression (scratch baseline)", "scratch TF-IDF",
        "TF-IDF n-grams + logistic regression, no pretrained weights", "nothing pretrained is used",
        "the TF-IDF vocabulary and a logistic-regression head", "one script call on a CPU in minutes",
        main_parameters=("ngram_max", "min_df", "C_grid"), uses_encoder=False, transfer_baseline=True,
        default="always"),
    RungFacts(
        # Simpler than probe to serve: no transformer at prediction time, so probe must beat it by the margin.
        "static", "cheap", "static token embeddings distilled from the encoder (model2vec) + linear head",
        "static embeddings",
        "the encoder distilled into static token vectors (model2vec), averaged per text, + logistic-regression "
        "head; no transformer runs at prediction time",
        "the distilled token vectors (the encoder runs once over its own vocabulary to make them)",
        "only the logistic-regression head on the averaged token vectors",
        "one script call on a CPU (distil the encoder once, fit a linear head), no GPU training loop",
        main_parameters=("pca_dims", "max_length", "C_grid"), requires=("model2vec", "static"), default="never",
        # model2vec reports ~100-500x the texts a second of the transformer on CPU; the plan takes the low end.
        cost_shape="distil", encode_speedup=100.0),
    RungFacts(
        "probe", "cheap", "frozen pretrained encoder + linear head", "frozen probe",
        "frozen pretrained encoder + logistic-regression head",
        "the whole pretrained encoder (every transformer block and the pooling)",
        "only the logistic-regression head on the frozen embeddings",
        "one script call (embed + fit a linear head), no GPU training loop",
        main_parameters=("C_grid",), transfer_baseline=True, default="always", retrain_as="probe"),
    RungFacts(
        "refit", "shared", "domain MLM-refit encoder, then frozen + linear head", "MLM refit",
        "encoder refit on in-domain unlabeled text, then frozen, + logistic-regression head",
        "the refit encoder during head training (its weights changed only by masked-language modelling on "
        "unlabeled in-domain text, never by the labels)",
        "the encoder during the unsupervised MLM refit; then only the logistic-regression head",
        "the head refits in one call; redoing the MLM refit is a GPU job",
        main_parameters=("objective", "lr", "max_seq_length", "batch_size"), cost_shape="refit",
        needs_unlabeled=True, retrain_as="probe",
        retrain_note="Retrained head on the stored refit encoder; the MLM refit itself was not rerun."),
    RungFacts(
        "setfit", "network", "SetFit: encoder tuned contrastively on label pairs + linear head", "SetFit",
        "encoder tuned contrastively on label pairs (SetFit), then frozen, + logistic-regression head",
        "nothing during the contrastive phase; the tuned encoder during head training",
        "every encoder weight through a pair-similarity loss (same class close, other classes apart), then "
        "only the logistic-regression head",
        "a short contrastive training loop (a CPU copes with a few hundred steps), then the head",
        main_parameters=("body_lr", "batch_size", "num_iterations", "max_length", "C_grid"), cost_shape="pairs",
        step_cost=2.0, optimizer_share=1.0, label_trained_encoder=True, few_labels_ok=True,
        requires=("setfit", "setfit")),
    RungFacts(
        "lora", "network", "LoRA adapters trained end to end", "LoRA adapters",
        "LoRA adapters on the frozen encoder + trained head", "the pretrained encoder weights (the base)",
        "low-rank adapter matrices inside attention plus the classification head", _NET, needs_engineer=True,
        main_parameters=("r", "alpha", "backbone_lr", "head_lr", "head", "max_length"), cost_shape="steps",
        step_cost=0.95, optimizer_share=0.02,  # measured 0.85 (RT) to 0.97 (tweets) of finetune
        label_trained_encoder=True),
    RungFacts(
        "unfreeze", "network", "partially unfrozen encoder (top blocks) + head", "partial unfreeze",
        "top encoder blocks unfrozen with discriminative learning rates + head",
        "the lower transformer blocks and the embeddings",
        "the top transformer blocks (lower learning rate) and the head", _NET, needs_engineer=True,
        main_parameters=("top_k", "schedule", "backbone_lr", "layer_decay", "head_lr", "head"),
        cost_shape="steps", step_cost=0.6, optimizer_share=0.35, label_trained_encoder=True),
    RungFacts(
        "finetune", "network", "full end-to-end fine-tune", "full fine-tune",
        "full fine-tuning of the encoder + head", "nothing", "every encoder weight and the head",
        "a deep-learning training loop (GPU)", needs_engineer=True,
        main_parameters=("backbone_lr", "head_lr", "layer_decay", "head", "max_length"), cost_shape="steps",
        step_cost=1.0, label_trained_encoder=True),
    RungFacts(
        "lpft", "network", "linear probe, then full fine-tune (LP-FT)", "LP-FT",
        "linear probe, then full fine-tuning from the probe's head",
        "the encoder during the linear-probe phase, nothing afterwards", "the head first, then every encoder weight",
        "a deep-learning training loop (GPU)", needs_engineer=True,
        main_parameters=("lp_method", "backbone_lr", "head_lr", "head", "max_length"), cost_shape="steps",
        step_cost=1.1, label_trained_encoder=True),
)
LADDER_FACTS = tuple(RungFacts(**{**f.__dict__, "position": i}) for i, f in enumerate(_RECORDS))
LADDER = tuple(f.name for f in LADDER_FACTS)
CHEAP_RUNGS = tuple(f.name for f in LADDER_FACTS if f.kind == "cheap")
NETWORK_RUNGS = tuple(f.name for f in LADDER_FACTS if f.kind == "network")
LABEL_TRAINED_ENCODER = tuple(f.name for f in LADDER_FACTS if f.label_trained_encoder)
# The baselines an adaptation must not fall below (negative transfer), in ladder order.
TRANSFER_BASELINES = tuple(f.name for f in LADDER_FACTS if f.transfer_baseline)
CHANGED_ENCODER = tuple(f.name for f in LADDER_FACTS if f.changes_encoder)
RELATIVE_STEP_COST = {f.name: f.step_cost for f in LADDER_FACTS if f.step_cost is not None}
# Reusing the encoder as it is: the rung every adaptation above it on the ladder is compared with.
FROZEN = "probe"
_BY_NAME = {f.name: f for f in LADDER_FACTS}


class FromCatalogue:
    """A rung class attribute read from the rung's record (one source of truth): ``uses_encoder`` on
    :class:`adaptlab.rungs.Rung` is one. A rung outside the catalogue (a plugin) gets the record of the
    catalogued rung it extends, else ``default``, unless its class sets the attribute itself.

    Example:
        >>> class Tfidf:
        ...     name = "tfidf"
        ...     uses_encoder = FromCatalogue(default=True)
        >>> class Plugin:
        ...     name = "my-rung"
        ...     uses_encoder = FromCatalogue(default=True)
        >>> class TfidfVariant(Tfidf):
        ...     name = "my-tfidf"
        >>> Tfidf.uses_encoder, Tfidf().uses_encoder, Plugin.uses_encoder, TfidfVariant.uses_encoder
        (False, False, True, False)
    """

    def __init__(self, *, default: object) -> None:
        self.default = default
        self.field = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.field = name  # the record's field of the same name

    def __get__(self, obj: object, owner: type) -> object:
        # The class's own record, else that of the catalogued rung it extends (a plugin subclassing probe).
        for klass in owner.__mro__:
            name = klass.__dict__.get("name")
            if isinstance(name, str) and name in _BY_NAME:
                return getattr(_BY_NAME[name], self.field)
        return self.default


def catalogued(rung: str) -> bool:
    """Whether ``rung`` has a record (a rung of this version, not a plugin).

    Example:
        >>> catalogued("probe"), catalogued("my-rung")
        (True, False)
    """
    return rung in _BY_NAME


def facts(rung: str) -> RungFacts:
    """The record of ``rung``; a rung outside the catalogue (a plugin) gets a neutral one: a network rung
    of unit cost, last on the ladder, that needs an engineer to retrain.

    Example:
        >>> facts("lora").label, facts("my-rung").kind, facts("my-rung").label
        ('LoRA adapters trained end to end', 'network', 'my-rung')
    """
    return _BY_NAME.get(rung) or RungFacts(
        rung, "network", rung, rung, rung, "unknown", "unknown", "unknown", needs_engineer=True,
        cost_shape="steps", step_cost=1.0, label_trained_encoder=True, default="never", position=len(LADDER))


def kind(rung: str) -> str:
    """``cheap``, ``shared`` or ``network`` (see :class:`RungFacts`); a plugin rung counts as ``network``.

    Example:
        >>> [kind(r) for r in ("tfidf", "refit", "lpft", "my-rung")]
        ['cheap', 'shared', 'network', 'network']
    """
    return facts(rung).kind


def ladder_key(rung: str) -> tuple[int, str]:
    """Sort key: ladder order, rungs outside the ladder last (by name).

    Example:
        >>> sorted(["lpft", "mine", "tfidf"], key=ladder_key)
        ['tfidf', 'lpft', 'mine']
    """
    return (LADDER.index(rung) if rung in LADDER else len(LADDER), rung)


def default_rungs(*, timed: bool, unlabeled: bool = False) -> list[str]:
    """The rungs a study compares when none are named (``study run`` without ``--rungs``, a study file
    without ``rungs``, the web app's form with no rung ticked).

    Without a time budget: the rungs whose record says ``default="always"``, ``tfidf`` and ``probe``, the
    default of every earlier version (so the ids of untimed studies stay as they were). With one, the
    decision-driven study spends it where the decision can still change, so it is offered the ladder, in
    ladder order: a rung that needs unlabeled texts (``refit``) only with some to refit on, a rung that
    needs an optional package (``setfit``: ``pip install 'adaptlab[setfit]'``) only where it is installed.
    Imports nothing (neither torch nor the rungs).

    Example:
        >>> default_rungs(timed=False, unlabeled=True)
        ['tfidf', 'probe']
        >>> [r for r in default_rungs(timed=True) if r != "setfit"]
        ['tfidf', 'probe', 'lora', 'unfreeze', 'finetune', 'lpft']
        >>> "refit" in default_rungs(timed=True, unlabeled=True)
        True
    """
    wanted = ("always", "timed") if timed else ("always",)
    return [f.name for f in LADDER_FACTS
            if f.default in wanted and (unlabeled or not f.needs_unlabeled)
            and (f.requires is None or _importable(f.requires[0]))]


def _importable(module: str) -> bool:
    """Whether ``module`` could be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def rungs_help(*, planner: bool = False) -> str:
    """The ``--rungs`` help of ``study run`` (``planner=False``) and of ``plan``, from the records: every
    catalogued rung, and the default set with its conditions, so a new rung appears in both by its record.

    Example:
        >>> text = rungs_help()
        >>> "tfidf, static, probe" in text, "Default: tfidf,probe;" in text, "static only when named" in text
        (True, True, True)
        >>> rungs_help(planner=True).split("Default: ")[1]
        'every rung but static (name it to plan it), each with why it is or is not planned.'
    """
    names = ", ".join(LADDER)
    never = ", ".join(f.name for f in LADDER_FACTS if f.default == "never")
    if planner:
        but = f" but {never} (name it to plan it)" if never else ""
        return f"Comma-separated rungs to plan, simplest first: {names}. Default: every rung{but}, each with why " \
               "it is or is not planned."
    where = [f"{f.name} where --unlabeled is given" for f in LADDER_FACTS if f.default == "timed" and f.needs_unlabeled]
    where += [f"{f.name} where it is installed" for f in LADDER_FACTS if f.default == "timed" and f.requires]
    always = ",".join(f.name for f in LADDER_FACTS if f.default == "always")
    return (f"Comma-separated rungs, simplest first: {names} (see `adaptlab rungs`). Default: {always}; with --time "
            f"every rung of the ladder that runs here ({', '.join(where)})" + "".join(
                f"; {f.name} only when named" + (f" (`pip install 'adaptlab[{f.requires[1]}]'`)" if f.requires else "")
                for f in LADDER_FACTS if f.default == "never") + ".")

"""Ship: the chosen rung as a scikit-learn `Pipeline`, saved without pickle, with a model card, a
versioned model registry and a gated retrain a non-engineer can run.

Example:
    >>> from adaptlab.ship import Pipeline, ModelRegistry, retrain
    >>> pipe = Pipeline(rung="probe").fit(train_texts, train_labels)                   # doctest: +SKIP
    >>> reg = ModelRegistry.create("models/news", pipe, train=train, eval_set=sealed)  # doctest: +SKIP
    >>> print(retrain("models/news", "new_labels.csv").message)                        # doctest: +SKIP
"""
from adaptlab.ship.evaluation import GateResult, evaluate_pipeline, gate
from adaptlab.ship.label_check import LabelCheck, check_new_labels, write_label_issues
from adaptlab.ship.pipeline import Pipeline, load_pipeline, read_manifest
from adaptlab.ship.registry import ModelRegistry, ModelVersion, load_model, ship_model
from adaptlab.ship.retrain import MergeReport, RetrainOutcome, merge_labels, retrain

__all__ = ["GateResult", "LabelCheck", "MergeReport", "ModelRegistry", "ModelVersion", "Pipeline", "RetrainOutcome",
           "evaluate_pipeline", "gate", "load_model", "load_pipeline", "merge_labels", "read_manifest", "retrain",
           "ship_model", "check_new_labels", "write_label_issues"]

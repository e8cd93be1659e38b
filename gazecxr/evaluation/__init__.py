"""Evaluation of trained models: saliency and diagnosis metrics, paired tests, tables and figures."""

from gazecxr.evaluation.outputs import SplitOutputs, summarise_saliency
from gazecxr.evaluation.report import (
    evaluate,
    evaluate_entries,
    run_split,
    summarise_classification,
)
from gazecxr.evaluation.saliency_methods import (
    MethodOutputs,
    Predictor,
    center_bias_map,
    entry_predictor,
    fixation_map,
    full_model_predictor,
    score_maps,
    uniform_map,
)

__all__ = [
    "MethodOutputs",
    "Predictor",
    "SplitOutputs",
    "center_bias_map",
    "entry_predictor",
    "evaluate",
    "evaluate_entries",
    "fixation_map",
    "full_model_predictor",
    "run_split",
    "score_maps",
    "summarise_classification",
    "summarise_saliency",
    "uniform_map",
]

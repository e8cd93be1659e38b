"""Human consistency: how well one radiologist's gaze map is predicted by the others' (the ceiling).

For every image with at least two readers, each reader in turn is left out and predicted by
the mean of the other readers' normalised maps; the prediction is scored with every saliency
metric against the left-out reader's map and fixations. Models are scored against the same
single readers, so the two sets of scores are paired (image, reader) by (image, reader).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.evaluation.saliency_methods import score_maps
from gazecxr.metrics import fixation_pixels
from gazecxr.metrics.statistics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PatientBootstrap,
    adjust_family,
    paired_score_tests,
)

INTER_READER = "inter_reader"
"""Method name of the leave-one-reader-out row in reports."""

NO_MULTI_READER = "no test image has two or more readers: no inter-reader ceiling"

_EXAMPLE_KEYS = frozenset({"position", "label", "dicom_id", "image", "heatmap", "index"})


def fixation_map(fixations: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary (H, W) map of the canvas pixels fixated at least once."""
    out = np.zeros(shape, bool)
    if len(fixations):
        rows, cols = fixation_pixels(fixations, shape)
        out[rows, cols] = True
    return out


def leave_one_out(maps: np.ndarray) -> np.ndarray:
    """For reader maps (R, H, W), R >= 2: the mean of the other readers' normalised maps, per reader."""
    maps = np.asarray(maps, np.float64)
    if len(maps) < 2:
        raise ValueError(f"leave-one-reader-out needs at least 2 readers, got {len(maps)}")
    maps = maps / maps.sum(axis=(1, 2), keepdims=True)
    return (maps.sum(axis=0, keepdims=True) - maps) / (len(maps) - 1)


def score_against_readers(pred: np.ndarray, maps: np.ndarray, fixations: Sequence[np.ndarray],
                          nonfixations: np.ndarray | None) -> dict[str, np.ndarray]:
    """Scores (one per reader) of predictions (R, H, W) — or one map (H, W) for all readers —
    against each reader's map and fixations; ``nonfixations`` (H, W) are the sAUC negatives."""
    maps = np.asarray(maps, np.float64)
    pred = np.broadcast_to(np.asarray(pred, np.float64), maps.shape)
    shape = maps.shape[1:]
    fixated = np.stack([fixation_map(f, shape) for f in fixations]) if len(fixations) else np.zeros(maps.shape, bool)
    if nonfixations is None:
        return score_maps(np.ascontiguousarray(pred), maps, fixated)
    return score_maps(np.ascontiguousarray(pred), maps, fixated, np.broadcast_to(nonfixations, maps.shape))


class ReaderConsistency:
    """Collects inter-reader and model-vs-reader scores over the multi-reader images of a split.

    Feed it every evaluated image with :meth:`add` (an example dict of ``run_split``: ``position``
    and every method's map under its name); :meth:`scores` returns the paired per-(image, reader)
    scores of the inter-reader row and of each method.
    """

    def __init__(self, dataset: GazeCXRDataset, methods: Sequence[str] | None = None, negatives: Any = None):
        self.dataset, self.methods, self.negatives = dataset, methods, negatives
        self._scores: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
        self.images = 0
        self.pairs = 0
        self.patients: list[str] = []

    def add(self, example: Mapping[str, Any]) -> None:
        """Score one image of the split (ignored unless it has two or more readers)."""
        index = int(self.dataset.indices[int(example["position"])])
        if self.dataset.reader_count(index) < 2:
            return
        maps, fixations = self.dataset.reader_maps(index)
        patient = str(self.dataset.patient_ids[int(example["position"])])
        nonfix = self.negatives.targets([index])[1][0] if self.negatives is not None else None
        results = {INTER_READER: score_against_readers(leave_one_out(maps), maps, fixations, nonfix)}
        methods = self.methods if self.methods is not None else [k for k in example if k not in _EXAMPLE_KEYS]
        for name in methods:
            if name not in example:
                continue
            if np.all(np.isfinite(example[name])):
                results[name] = score_against_readers(example[name], maps, fixations, nonfix)
            else:  # a baseline this record has not (no lung mask, no chest box): no value, pairs kept aligned
                results[name] = {m: np.full(len(maps), np.nan) for m in results[INTER_READER]}
        for name, by_metric in results.items():
            for metric, values in by_metric.items():
                self._scores[name][metric].append(np.asarray(values, np.float64))
        self.images += 1
        self.pairs += len(maps)
        self.patients.extend([patient] * len(maps))

    def scores(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-(image, reader) scores of ``inter_reader`` and every method, in the same order."""
        return {name: {m: np.concatenate(v) for m, v in by_metric.items()} for name, by_metric in self._scores.items()}

    def summary(self, bootstrap: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict[str, Any]:
        """Mean/std per metric of the inter-reader row and of each method against single readers, the
        mean's patient-bootstrap interval (``intervals``; ``bootstrap`` resamples of the images' patients,
        0: none), and paired t-tests and Wilcoxon tests of each method against the inter-reader row with
        Holm-adjusted p per metric (``p_holm``, ``wilcoxon_p_holm``); or a note when no image of the split
        has two readers."""
        if not self.images:
            return {"images": 0, "pairs": 0, "note": NO_MULTI_READER}
        scores = self.scores()
        rows = {name: {m: _mean_std(v) for m, v in by_metric.items()} for name, by_metric in scores.items()}
        boot = PatientBootstrap(np.asarray(self.patients, str), bootstrap, seed)
        intervals = {name: {m: boot.mean(v) for m, v in by_metric.items()} for name, by_metric in scores.items()}
        tests = []
        for name, by_metric in scores.items():
            if name == INTER_READER:
                continue
            for metric, values in by_metric.items():
                ceiling = scores[INTER_READER].get(metric)
                if ceiling is None:
                    continue
                both = np.isfinite(values) & np.isfinite(ceiling)
                if both.sum() >= 2:
                    tests.append({"method": name, "reference": INTER_READER, "metric": metric,
                                  **paired_score_tests(values, ceiling)})
        for metric in {t["metric"] for t in tests}:
            for key in ("p", "wilcoxon_p"):
                adjust_family([t for t in tests if t["metric"] == metric], key)
        return {"images": self.images, "pairs": self.pairs, "scores": rows, "intervals": intervals, "tests": tests,
                "note": f"inter-reader: each of the {self.pairs} readings of the {self.images} test images with "
                        "two or more readers predicted by the mean of the other readers' maps; methods scored "
                        "against the same single readers (paired by image and reader)."}


def _mean_std(values: np.ndarray) -> dict[str, float]:
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return {"mean": float(finite.mean()), "std": float(finite.std())} if finite.size else \
        {"mean": float("nan"), "std": float("nan")}


def inter_reader_note(summary: Mapping[str, Any], methods: Sequence[str] = ("full",),
                      metrics: Sequence[str] = ("kl", "cc", "nss")) -> str:
    """One report line: the inter-reader row beside ``methods`` scored against single readers."""
    if not summary.get("images"):
        return f"Inter-reader ceiling: {summary.get('note', NO_MULTI_READER)}."
    scores = summary["scores"]

    def row(name: str) -> str:
        return ", ".join(f"{m.upper()} {scores[name][m]['mean']:.3f} ± {scores[name][m]['std']:.3f}"
                         for m in metrics if m in scores.get(name, {}))

    parts = [f"inter-reader {row(INTER_READER)}"]
    for name in methods:
        if name in scores:
            p = {t["metric"]: t["p"] for t in summary["tests"] if t["method"] == name}
            parts.append(f"{name} vs single readers {row(name)} (paired t-test p: "
                         + ", ".join(f"{m.upper()} {p[m]:.3g}" for m in metrics if m in p) + ")")
    return (f"Inter-reader ceiling over {summary['pairs']} readings of {summary['images']} test images with two or "
            "more readers (each reader predicted by the mean of the others): " + "; ".join(parts) + ".")

"""How well the readers' gaze localises the finding: gaze against the region masks, per film, with
patient-bootstrap intervals (CXR-P: Saab et al.'s gaze beside the SIIM-ACR pneumothorax masks).

Per film with gaze and a non-empty mask, on the model canvas (image region only, padding excluded):

- ``dwell_share``: the share of the fixations' dwell (seconds) that falls inside the mask;
- ``mask_area``: the mask's share of the image region, the dwell share of a reader looking uniformly;
- ``cc``: Pearson correlation of the gaze heatmap with the mask (0/1);
- ``auc``: ROC AUC of the heatmap as a score separating mask pixels from the other image pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from gazecxr.config.errors import InputError
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.metrics.statistics import DEFAULT_RESAMPLES, DEFAULT_SEED, PatientBootstrap

__all__ = ["FILM_METRICS", "film_scores", "gaze_vs_mask"]

FILM_METRICS = ("dwell_share", "mask_area", "cc", "auc")


def film_scores(heatmap: np.ndarray, fixations: np.ndarray, mask: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """The :data:`FILM_METRICS` of one film: canvas ``heatmap`` (H, W), ``fixations`` (K, 3: x, y, seconds
    on the canvas), ``mask`` (H, W) bool and the image ``region`` (H, W) bool. ``dwell_share`` is NaN
    without fixations; ``cc`` and ``auc`` NaN when the mask covers none or all of the region."""
    mask, region = np.asarray(mask, bool), np.asarray(region, bool)
    inside = mask[region]
    h, w = mask.shape
    cols = np.clip(np.floor(fixations[:, 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(fixations[:, 1]).astype(np.int64), 0, h - 1)
    dwell = fixations[:, 2].astype(np.float64)
    total = float(dwell.sum())
    share = float(dwell[mask[rows, cols]].sum() / total) if total > 0 else float("nan")
    scores = np.asarray(heatmap, np.float64)[region]
    defined = 0 < inside.sum() < inside.size and scores.std() > 0
    return {"dwell_share": share, "mask_area": float(inside.mean()),
            "cc": float(np.corrcoef(scores, inside.astype(np.float64))[0, 1]) if defined else float("nan"),
            "auc": float(roc_auc_score(inside, scores)) if defined else float("nan")}


def gaze_vs_mask(h5_path: str | Path, split: str = "all", bootstrap: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Per-film :func:`film_scores` of the films of ``split`` with gaze and a non-empty region mask, and per
    metric the mean over films with its patient-bootstrap interval (``bootstrap`` resamples, ``seed``).
    Raises InputError for a file without heatmaps, fixations or region masks, or without such films."""
    data = GazeCXRDataset(h5_path, split)
    if not (data.has_heatmap and data.has_fixations):
        raise InputError(f"{h5_path}: needs gaze heatmaps and fixations (convert with gazecxr convert cxr-p)")
    films, patients = [], []
    f = data._h5(0)
    if "region_mask" not in f:
        raise InputError(f"{h5_path}: no region_mask dataset (the masks of gazecxr convert cxr-p / siim)")
    for i, index in enumerate(data.indices):
        mask = data.region_mask(int(index))
        if not data.has_gaze[i] or mask is None or not mask.any():
            continue
        region = np.zeros(data.canvas, bool)
        region[data.letterbox(int(index)).region] = True
        k, row = data._locate(int(index))
        scores = film_scores(data._h5(k)["heatmap"][row], data.fixations(int(index)), mask, region)
        films.append({"dicom_id": str(data.dicom_ids[i]), "patient_id": str(data.patient_ids[i]), **scores})
        patients.append(str(data.patient_ids[i]))
    if not films:
        raise InputError(f"{h5_path}: no film of split {split!r} has both gaze and a non-empty mask")
    boot = PatientBootstrap(np.asarray(patients), bootstrap, seed)
    summary = {m: boot.mean(np.array([film[m] for film in films], np.float64)) for m in FILM_METRICS}
    share = np.array([film["dwell_share"] - film["mask_area"] for film in films])
    summary["dwell_share_minus_area"] = boot.mean(share)
    return {"file": str(h5_path), "split": split, "films": len(films), "patients": len(set(patients)),
            "summary": summary, "per_film": films, "statistics": boot.label}

"""Report figures (matplotlib ``Figure`` objects, no pyplot state): ROC curves, confusion matrix,
reliability diagram and saliency overlays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from sklearn.metrics import roc_curve

from gazecxr import CLASS_NAMES
from gazecxr.metrics import reliability_curve


def roc_figure(labels: np.ndarray, probs: Mapping[str, np.ndarray],
               class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """One-vs-rest ROC curves, one panel per class, one curve per classification method."""
    fig = Figure(figsize=(4.2 * len(class_names), 4.2), layout="constrained")
    axes = fig.subplots(1, len(class_names), squeeze=False)[0]
    for c, (ax, name) in enumerate(zip(axes, class_names)):
        positive = labels == c
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        if positive.all() or not positive.any():
            ax.text(0.5, 0.5, "undefined: one class only", ha="center", va="center")
        else:
            for method, p in probs.items():
                fpr, tpr, _ = roc_curve(positive, p[:, c])
                ax.plot(fpr, tpr, label=method)
            ax.legend(loc="lower right")
        ax.set(title=f"{name} vs rest", xlabel="false positive rate", ylabel="true positive rate",
               xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    return fig


def confusion_figure(matrix: Sequence[Sequence[int]], title: str,
                     class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """Confusion matrix (rows true class, columns predicted class) with its counts."""
    counts = np.asarray(matrix)
    fig = Figure(figsize=(4.5, 4.0), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax)
    threshold = counts.max() / 2 if counts.size else 0
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > threshold else "black")
    ticks = range(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=class_names, yticklabels=class_names,
           xlabel="predicted", ylabel="true", title=title)
    return fig


def reliability_figure(labels: np.ndarray, probs: Mapping[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Reliability diagram: accuracy against confidence of the arg-max class, per method."""
    fig = Figure(figsize=(4.8, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    for method, p in probs.items():
        curve = reliability_curve(labels, p, n_bins)
        filled = curve["count"] > 0
        ax.plot(curve["confidence"][filled], curve["accuracy"][filled], marker="o", label=method)
    ax.set(xlabel="confidence (max probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.01),
           aspect="equal", title="Reliability diagram")
    ax.legend(loc="upper left")
    return fig


def overlay_figure(examples: Sequence[Mapping[str, Any]], columns: Mapping[str, str],
                   class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """Grid of test images (rows) with maps overlaid (columns after the plain image).

    Each example holds ``image``, ``label``, ``dicom_id`` and the (H, W) maps named by the keys
    of ``columns`` (key → column title); optionally ``row_label`` (shown instead of the class and
    id) and ``boxes`` (K, 4) canvas xmin, ymin, xmax, ymax of finding ellipses with ``box_names``
    (K names), outlined on every panel and named on the image.
    """
    n_cols = 1 + len(columns)
    fig = Figure(figsize=(2.4 * n_cols, 2.6 * max(1, len(examples))), layout="constrained")
    axes = fig.subplots(max(1, len(examples)), n_cols, squeeze=False)
    for row, example in zip(axes, examples):
        row[0].imshow(example["image"], cmap="gray")
        row_label = example.get("row_label") or f"{class_names[example['label']]}\n{example['dicom_id'][:12]}"
        row[0].set_ylabel(row_label, fontsize=8)
        for ax, key in zip(row[1:], columns):
            ax.imshow(example["image"], cmap="gray")
            ax.imshow(example[key], cmap="jet", alpha=0.45)
        _outline_ellipses(row, example.get("boxes"), example.get("box_names"))
    for ax, title in zip(axes[0], ["image", *columns.values()]):
        ax.set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _outline_ellipses(axes: Sequence[Any], boxes: Any, names: Sequence[str] | None) -> None:
    """Outline the ellipses inscribed in ``boxes`` (K, 4) on every panel; name them on the first."""
    if boxes is None:
        return
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    limits = [(ax.get_xlim(), ax.get_ylim()) for ax in axes]
    for k, (xmin, ymin, xmax, ymax) in enumerate(boxes):
        for ax in axes:
            ax.add_patch(Ellipse(((xmin + xmax) / 2, (ymin + ymax) / 2), xmax - xmin, ymax - ymin,
                                 fill=False, edgecolor="lime", linewidth=1.2))
        if names is not None:
            axes[0].text(xmin, ymin, names[k], color="lime", fontsize=6, va="bottom", clip_on=True)
    for ax, (xlim, ylim) in zip(axes, limits):
        ax.set(xlim=xlim, ylim=ylim)

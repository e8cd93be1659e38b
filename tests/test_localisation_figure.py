"""Finding ellipses outlined on the report's overlay figure."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.patches import Ellipse

from gazecxr.evaluation.figures import overlay_figure


def _example(**extra) -> dict:
    rng = np.random.default_rng(0)
    return {"image": rng.random((32, 40)), "label": 1, "dicom_id": "abc", "gaze": rng.random((32, 40)),
            "full": rng.random((32, 40)), **extra}


def test_overlay_outlines_finding_ellipses_on_every_panel():
    boxes = np.array([[4.0, 6.0, 20.0, 14.0], [25.0, 2.0, 60.0, 30.0]])  # the second leaves the canvas
    fig = overlay_figure([_example(boxes=boxes, box_names=["Atelectasis", "Pneumothorax"],
                                   row_label="P102R123456")], {"gaze": "gaze", "full": "ours"})
    axes = fig.axes
    assert len(axes) == 3 and axes[0].get_ylabel() == "P102R123456"
    for ax in axes:
        ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
        assert len(ellipses) == 2
        assert np.allclose(ellipses[0].center, (12.0, 10.0))
        assert (ellipses[0].width, ellipses[0].height) == (16.0, 8.0)
        assert ax.get_xlim() == (-0.5, 39.5) and ax.get_ylim() == (31.5, -0.5)  # the canvas, not the box
    assert [t.get_text() for t in axes[0].texts] == ["Atelectasis", "Pneumothorax"]
    fig.savefig(io.BytesIO(), format="png")


def test_overlay_without_boxes_is_unchanged():
    fig = overlay_figure([_example()], {"gaze": "gaze"})
    assert not any(ax.patches for ax in fig.axes) and fig.axes[0].get_ylabel() == "CHF\nabc"

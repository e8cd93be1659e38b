"""Region ground truth (boxes and masks) on the model canvas: one representation for every dataset.

Boxes are rows xmin, ymin, xmax, ymax in pixel-edge coordinates (a box covering original pixel
columns 10..19 has xmin 10, xmax 20); on the canvas they are ``original · resized/original + pad``
(:func:`gazecxr.data.convert.boxes_to_canvas`). A pixel (row r, column c) lies inside a box when its
centre (c + ½, r + ½) does. Masks are boolean (H, W) arrays; originals are kept as run-length
strings in the SIIM-ACR convention (:func:`rle_encode`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EMPTY_RLE = "-1"
"""The SIIM-ACR run-length string of an empty mask."""


def rle_decode(rle: str, height: int, width: int) -> np.ndarray:
    """Decode a SIIM-ACR run-length string into a (height, width) bool mask.

    The string holds integer pairs (offset, length); each offset counts from the end of the
    previous run (the first from pixel 0), over the image flattened in column-major order — the
    organisers' ``rle2mask(rle, width, height)`` followed by the transpose its callers apply.
    ``"-1"`` (or an empty string) is the empty mask. Raises ValueError for an odd number of values,
    a negative offset, a non-positive length or a run past the last pixel.
    """
    flat = np.zeros(height * width, bool)
    text = str(rle).strip()
    if text in ("", EMPTY_RLE):
        return flat.reshape(width, height).T.copy()
    try:
        values = np.array(text.split(), np.int64)
    except ValueError as err:
        raise ValueError(f"run-length string holds a non-integer: {err}") from err
    if len(values) % 2:
        raise ValueError(f"run-length string has an odd number of values ({len(values)})")
    offsets, lengths = values[0::2], values[1::2]
    if (offsets < 0).any() or (lengths <= 0).any():
        raise ValueError("run-length string has a negative offset or a non-positive length")
    ends = np.cumsum(offsets + lengths)
    if ends[-1] > flat.size:
        raise ValueError(f"run-length string runs to pixel {int(ends[-1])}, past the {height}×{width} image")
    for start, stop in zip(ends - lengths, ends):
        flat[start:stop] = True
    return flat.reshape(width, height).T.copy()


def rle_encode(mask: np.ndarray) -> str:
    """The SIIM-ACR run-length string of a (height, width) bool mask (inverse of :func:`rle_decode`).

    Unlike the organisers' ``mask2rle``, a run that reaches the last pixel is kept.
    """
    flat = np.asarray(mask, bool).T.ravel()
    edges = np.diff(np.concatenate([[0], flat.view(np.uint8), [0]]).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not len(starts):
        return EMPTY_RLE
    offsets = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{o} {n}" for o, n in zip(offsets.tolist(), (ends - starts).tolist()))


def rasterise_boxes(boxes: np.ndarray, shape: tuple[int, int], ellipse: bool = False) -> np.ndarray:
    """Union of ``boxes`` (K, 4 canvas xmin, ymin, xmax, ymax) as an (H, W) bool mask: pixels whose
    centre is inside a box (``ellipse``: inside the box's inscribed ellipse)."""
    out = np.zeros(shape, bool)
    rows = np.arange(shape[0]) + 0.5
    cols = np.arange(shape[1]) + 0.5
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        if ellipse:
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            if rx <= 0 or ry <= 0:
                continue
            out |= ((cols[None, :] - cx) / rx) ** 2 + ((rows[:, None] - cy) / ry) ** 2 <= 1.0
        else:
            out |= ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None, :]
    return out


@dataclass(frozen=True)
class RegionBoxes:
    """The annotated regions of one record.

    ``boxes`` (K, 4) float32 canvas xmin, ymin, xmax, ymax; ``boxes_original`` the same in original
    image pixels; ``finding`` (K,) int32 index into ``label_names`` (-1: none); ``reader`` (K,) the
    reader id of each box ("" when the dataset has none or for a consensus); ``kind`` "box" or
    "ellipse" (REFLACX ellipses, given by their bounding boxes).
    """

    boxes: np.ndarray
    boxes_original: np.ndarray
    finding: np.ndarray
    reader: np.ndarray
    kind: str = "box"
    label_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.boxes)

    def of(self, finding: str | int) -> RegionBoxes:
        """The regions of one finding (a name of ``label_names`` or its index)."""
        k = self.label_names.index(finding) if isinstance(finding, str) else int(finding)
        keep = self.finding == k
        return RegionBoxes(self.boxes[keep], self.boxes_original[keep], self.finding[keep], self.reader[keep],
                           self.kind, self.label_names)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Union of the regions rasterised on a canvas of ``shape`` (see :func:`rasterise_boxes`)."""
        return rasterise_boxes(self.boxes, shape, ellipse=self.kind == "ellipse")


def no_regions(label_names: list[str] | None = None) -> RegionBoxes:
    """An empty :class:`RegionBoxes`."""
    return RegionBoxes(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.int32),
                       np.zeros(0, dtype=object), "box", list(label_names or []))

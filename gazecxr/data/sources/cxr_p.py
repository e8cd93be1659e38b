"""CXR-P source: Saab et al.'s radiologist gaze on SIIM-ACR stage-1 films, with the SIIM masks and labels.

The films, labels (``findings``: Pneumothorax, from the mask table) and masks are the SIIM-ACR
source's (:class:`~gazecxr.data.sources.siim.SIIMSource`); the gaze (``cxr_gaze_data.pkl`` or its JSON
copy, :mod:`~gazecxr.data.sources.cxr_p_format`) becomes fixations at ``(x · width, y · height)``
original pixels weighing ``t / 60`` s, blurred with the EGD-CXR recipe (Gaussian σ in original pixels,
:class:`~gazecxr.data.heatmap.PointGaze`). A film without gaze is kept with ``has_gaze`` false and an
all-zero heatmap (no centre fixation is made up). With the EG-ViT split lists, unlisted films are
skipped, a listed label that disagrees with the mask table is reported (the mask table wins) and the
validation split is carved from the train list by patient (``--split official``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from gazecxr.config.errors import InputError
from gazecxr.data.convert import ConversionReport, ConvertOptions, SourceRecord, convert_source
from gazecxr.data.heatmap import PointGaze
from gazecxr.data.provenance import is_synthetic_source
from gazecxr.data.sources.cxr_p_format import FilmGaze, read_gaze, read_split_list
from gazecxr.data.sources.siim import FINDINGS, RLE_TABLE, SIIMSource, read_rle_table
from gazecxr.data.tables import GazePoints

__all__ = ["CXRP_SIGMA", "CXRPSource", "convert_cxr_p", "film_size"]

CXRP_SIGMA = 75.5 * 1024 / 3000
"""Default σ (original pixels): the EGD-CXR 75.5 px at ~3000-px MIMIC films, scaled to SIIM's 1024-px films."""


def film_size(path: Path) -> tuple[int, int]:
    """(Rows, Columns) of a DICOM film, read from its header only."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
        return int(ds.Rows), int(ds.Columns)
    except (InvalidDicomError, OSError, ValueError, AttributeError, TypeError) as err:
        raise ValueError(f"{path}: no readable Rows/Columns ({type(err).__name__}: {err})") from err


def _pixels(gaze: FilmGaze, size: tuple[int, int]) -> GazePoints:
    """Fixations in original pixels (x = 1 or y = 1, the film's far edge, lands on its last pixel)."""
    h, w = size
    x = np.minimum(gaze.x * w, np.nextafter(w, 0))
    y = np.minimum(gaze.y * h, np.nextafter(h, 0))
    return GazePoints(x, y, gaze.seconds)


@dataclass
class CXRPSource:
    """SIIM-ACR folder ``siim_dir`` with the CXR-P gaze file ``gaze_file`` and optionally the split lists
    ``split_lists`` (train, test)."""

    siim_dir: Path
    gaze_file: Path
    split_lists: tuple[Path, Path] | None = None
    name: str = "CXR-P"
    finding_names: tuple[str, ...] | None = FINDINGS
    has_gaze: bool = True
    mask_finding: str = FINDINGS[0]

    def description(self) -> str:
        return f"CXR-P gaze ({self.gaze_file.name}) on SIIM-ACR ({self.siim_dir.name})"

    def _listed(self) -> dict[str, tuple[str, int]] | None:
        if self.split_lists is None:
            return None
        listed: dict[str, tuple[str, int]] = {}
        for split, path in zip(("train", "test"), self.split_lists):
            for sop, label in read_split_list(path).items():
                if sop in listed:
                    raise InputError(f"{path}: image {sop} is also in the other split list")
                listed[sop] = (split, label)
        return listed

    def records(self, options: ConvertOptions, report: ConversionReport) -> list[SourceRecord]:
        """The SIIM records (films found, masks decoded) with their gaze, split and ``has_gaze``."""
        gaze = read_gaze(self.gaze_file)
        listed = self._listed()
        siim = SIIMSource(self.siim_dir).records(options, report)
        known = set(read_rle_table(self.siim_dir / RLE_TABLE))
        for sop in gaze.keys() - known:
            report.skip(sop, f"gaze without a film: {sop} is not in {self.siim_dir / RLE_TABLE}")
        if listed is not None:
            for sop in listed.keys() - known:
                report.skip(sop, f"listed without a film: {sop} of the split lists is not in "
                                 f"{self.siim_dir / RLE_TABLE}")
        out = []
        for record in siim:
            split = None
            if listed is not None:
                if record.record_id not in listed:
                    report.skip(record.record_id, "not in the split lists")
                    continue
                split, label = listed[record.record_id]
                table = int(record.readings[0].findings[0])
                if label != table:
                    report.note(record.record_id, f"split list ({split}) says label {label}, the mask table "
                                                  f"{table}: the mask table's label is kept")
            try:
                out.append(self._with_gaze(record, gaze.get(record.record_id), split, options.sigma))
            except ValueError as err:
                report.skip(record.record_id, f"unreadable image: {err}")
        return out

    def _with_gaze(self, record: SourceRecord, gaze: FilmGaze | None, split: str | None,
                   sigma: float) -> SourceRecord:
        path = Path(record.image_root) / record.relative_path
        size = film_size(path)
        spec = record.readings[0]
        info = {**record.info, "gaze_points": 0, "gaze_points_off_film": 0}
        if gaze is not None:
            info.update(gaze_points=len(gaze), gaze_points_off_film=gaze.n_off_film)
        if gaze is None or not (gaze.seconds > 0).any():
            return replace(record, gaze=False, split=split, expected_size=size, info=info,
                           readings=(replace(spec, fixations=None if gaze is None else _pixels(gaze, size)),))
        points = _pixels(gaze, size)
        return replace(record, gaze=True, split=split, expected_size=size, info=info,
                       readings=(replace(spec, heatmap=PointGaze(points.x, points.y, points.weight, sigma),
                                         fixations=points),))


def convert_cxr_p(
    siim_dir: str | Path,
    gaze_file: str | Path,
    output: str | Path,
    options: ConvertOptions = ConvertOptions(sigma=CXRP_SIGMA),
    progress: bool = True,
    split_lists: tuple[str | Path, str | Path] | None = None,
) -> ConversionReport:
    """Convert CXR-P (gaze) + SIIM-ACR (films, masks) to ``output`` (see :func:`convert_source`). With
    ``split_lists`` (train, test) the split is theirs, ``options.val_fraction`` of train carved out as val
    by patient with ``options.seed``."""
    lists = None if split_lists is None else (Path(split_lists[0]), Path(split_lists[1]))
    source = CXRPSource(Path(siim_dir), Path(gaze_file), lists)
    if lists is not None:
        options = replace(options, split="official")
    return convert_source(source, output, options, progress, fixations=True,
                          attrs={"heatmap": "fixations (t/60 s) splatted at model resolution, Gaussian σ·scale, sum 1",
                                 "gaze_format": Path(gaze_file).suffix.lstrip("."),
                                 "split_lists": "EG-ViT train_list/test_list" if lists else "",
                                 "synthetic": is_synthetic_source(siim_dir)})

"""EGD-CXR source: master sheet, gaze table and fixations → one record per image (one reader)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gazecxr import CLASS_NAMES
from gazecxr.data.convert import (
    ConversionReport,
    ConvertOptions,
    ReadingSpec,
    SourceRecord,
    convert_source,
)
from gazecxr.data.heatmap import PointGaze
from gazecxr.data.provenance import is_synthetic_source
from gazecxr.data.sources.egd_format import (
    FIXATIONS,
    SEGMENTATION_DIR,
    read_master_sheet,
    stream_gaze,
)
from gazecxr.data.synthetic.knobs import knobs_attrs
from gazecxr.data.tables import GazePoints


@dataclass
class EGDSource:
    """The EGD-CXR folder ``egd_dir`` with MIMIC-CXR films under ``image_dir``."""

    egd_dir: Path
    image_dir: Path
    name: str = "EGD-CXR"
    finding_names: tuple[str, ...] | None = None
    voi_lut: bool = False
    """Apply each DICOM's VOI LUT / window before scaling (``gazecxr.data.images.read_dicom``)."""

    @property
    def has_fixations(self) -> bool:
        return (self.egd_dir / FIXATIONS).is_file()

    def description(self) -> str:
        return f"EGD-CXR ({self.egd_dir.name}) + images ({self.image_dir.name})"

    def records(self, options: ConvertOptions, report: ConversionReport) -> list[SourceRecord]:
        """One record per master-sheet image with exactly one class and some gaze rows."""
        sheet = read_master_sheet(self.egd_dir)
        if options.limit is not None:
            sheet = sheet.iloc[: options.limit]
        duplicated = sheet["dicom_id"].duplicated()
        for dicom_id in sheet.loc[duplicated, "dicom_id"]:
            report.skip(dicom_id, "duplicate dicom_id: listed more than once in the master sheet")
        sheet = sheet[~duplicated]
        bad_label = sheet["label"] < 0
        for dicom_id in sheet.loc[bad_label, "dicom_id"]:
            report.skip(dicom_id, f"label not exactly one of {'/'.join(CLASS_NAMES)}")
        sheet = sheet[~bad_label]
        ids = set(sheet["dicom_id"])
        truncated: dict[str, dict[str, dict[str, object]]] = {options.gaze: {}, "fixations": {}}
        gaze = stream_gaze(self.egd_dir, ids, options.gaze, truncated=truncated[options.gaze])
        has_gaze = sheet["dicom_id"].isin(gaze.keys())
        for dicom_id in sheet.loc[~has_gaze, "dicom_id"]:
            report.skip(dicom_id, f"no gaze samples: no rows for this image in the {options.gaze} gaze table")
        sheet = sheet[has_gaze]
        fixations = ((gaze if options.gaze == "fixations"
                      else stream_gaze(self.egd_dir, ids, "fixations", truncated=truncated["fixations"]))
                     if self.has_fixations else {})
        matched = _report_truncated(truncated, report)
        canvas = (options.height, options.width)
        return [
            SourceRecord(row.dicom_id, str(row.patient_id), int(row.label), str(self.image_dir), row.path, canvas,
                         (ReadingSpec(heatmap=PointGaze(*_xyw(gaze[row.dicom_id]), options.sigma),
                                      fixations=fixations.get(row.dicom_id)),),
                         mask_dir=str(self.egd_dir / SEGMENTATION_DIR / row.dicom_id),
                         info={"truncated_id_rows": matched[row.dicom_id]} if row.dicom_id in matched else {},
                         voi_lut=self.voi_lut)
            for row in sheet.itertuples()
        ]


def _report_truncated(truncated: dict[str, dict[str, dict[str, object]]], report: ConversionReport
                      ) -> dict[str, dict[str, int]]:
    """Report the gaze rows whose truncated ``DICOM_ID`` was ambiguous or matched no image (dropped);
    return, per image, the rows recovered from a uniquely matching prefix, by table."""
    matched: dict[str, dict[str, int]] = {}
    for table, prefixes in truncated.items():
        for prefix, entry in prefixes.items():
            rows = int(entry["rows"])
            if entry["status"] == "matched":
                counts = matched.setdefault(str(entry["dicom_id"]), {})
                counts[table] = counts.get(table, 0) + rows
            else:
                why = ("is a prefix of several images" if entry["status"] == "ambiguous"
                       else "is a prefix of no image being converted")
                report.skip(prefix, f"truncated DICOM_ID: {prefix!r} {why}; {rows} {table} row(s) dropped")
    return matched


def _xyw(points: GazePoints) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return points.x, points.y, points.weight


def convert_egd_cxr(
    egd_dir: str | Path,
    image_dir: str | Path,
    output: str | Path,
    options: ConvertOptions = ConvertOptions(),
    progress: bool = True,
    voi_lut: bool = False,
    split_file: str | Path | None = None,
) -> ConversionReport:
    """Convert raw EGD-CXR records to ``output`` (see :func:`convert_source`); ``voi_lut`` applies the
    DICOMs' VOI LUT / window (recorded as the root attribute ``voi_lut`` when set); ``split_file`` is a
    published split list to reproduce: ours (``dicom_id,split``) or GD-ViG's ``mimic_part.csv``
    (see :func:`gazecxr.data.convert.read_split_file`)."""
    source = EGDSource(Path(egd_dir), Path(image_dir), voi_lut=voi_lut)
    return convert_source(source, output, options, progress, fixations=source.has_fixations,
                          attrs={"heatmap": "gaze samples splatted at model resolution, Gaussian σ·scale, sum 1",
                                 "synthetic": is_synthetic_source(egd_dir), **knobs_attrs(egd_dir),
                                 **({"voi_lut": True} if voi_lut else {})}, split_file=split_file)

"""The raw EGD-CXR 1.0.0 layout (PhysioNet): exact CSV headers and file names."""

from __future__ import annotations

MASTER_SHEET = "master_sheet.csv"
EYE_GAZE = "eye_gaze.csv"
FIXATIONS = "fixations.csv"
BOUNDING_BOXES = "bounding_boxes.csv"
SEGMENTATION_DIR = "audio_segmentation_transcripts"

MASTER_SHEET_COLUMNS: tuple[str, ...] = (
    "dicom_id", "path", "study_id", "patient_id", "stay_id", "gender", "anchor_age",
    "image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad",
    "dx1", "dx1_icd", "dx2", "dx2_icd", "dx3", "dx3_icd", "dx4", "dx4_icd", "dx5", "dx5_icd",
    "dx6", "dx6_icd", "dx7", "dx7_icd", "dx8", "dx8_icd", "dx9", "dx9_icd",
    "normal_reports", "Normal", "CHF", "pneumonia",
    "consolidation", "enlarged_cardiac_silhouette", "linear__patchy_atelectasis",
    "lobar__segmental_collapse",
    "not_otherwise_specified_opacity___pleural__parenchymal_opacity__",
    "pleural_effusion_or_thickening", "pulmonary_edema__hazy_opacity", "normal_anatomically",
    "elevated_hemidiaphragm", "hyperaeration", "vascular_redistribution",
    "atelectasis__chx", "cardiomegaly__chx", "consolidation__chx", "edema__chx",
    "enlarged_cardiomediastinum__chx", "fracture__chx", "lung_lesion__chx", "lung_opacity__chx",
    "no_finding__chx", "pleural_effusion__chx", "pleural_other__chx", "pneumonia__chx",
    "pneumothorax__chx", "support_devices__chx", "cxr_exam_indication",
)

GAZE_COLUMNS: tuple[str, ...] = (
    "SESSION_ID", "MEDIA_ID", "DICOM_ID", "CNT", "Time (in secs)", "TIMETICK(f=10000000)",
    "FPOGX", "FPOGY", "FPOGS", "FPOGD", "FPOGID", "FPOGV", "BPOGX", "BPOGY", "BPOGV",
    "LPCX", "LPCY", "LPD", "LPS", "LPV", "RPCX", "RPCY", "RPD", "RPS", "RPV",
    "BKID", "BKDUR", "BKPMIN", "LPMM", "LPMMV", "RPMM", "RPMMV",
    "SACCADE_MAG", "SACCADE_DIR", "VID_FRAME", "X_ORIGINAL", "Y_ORIGINAL",
)
"""Shared header of ``eye_gaze.csv`` (raw 60 Hz samples) and ``fixations.csv``."""

BOUNDING_BOX_COLUMNS: tuple[str, ...] = ("dicom_id", "bbox_name", "x1", "x2", "y1", "y2")

LABEL_COLUMNS: tuple[str, ...] = ("Normal", "CHF", "pneumonia")
"""Master-sheet columns holding the one-hot class; same order as ``gazecxr.CLASS_NAMES``."""

MASK_FILES: dict[str, tuple[str, ...]] = {
    "left_lung": ("left_lung.png",),
    "right_lung": ("right_lung.png",),
    "mediastinum": ("mediastinum.png", "mediastanum.png"),
    "aortic_knob": ("aortic_knob.png",),
}
"""Anatomical masks per image; the first name is what we write, later names are accepted
spellings (the released EGD-CXR files spell the mediastinum mask ``mediastanum.png``)."""

SCREEN_SIZE: tuple[int, int] = (1920, 1080)
"""Gazepoint screen (width, height) in pixels; FPOGX/FPOGY are fractions of it."""

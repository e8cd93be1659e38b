"""The REFLACX 1.0.0 layout (PhysioNet): exact file names, CSV headers and label sets."""

from __future__ import annotations

MAIN_DIR = "main_data"
GAZE_DIR = "gaze_data"
METADATA = "metadata_phase_{phase}.csv"
PHASES = (1, 2, 3)
FIXATIONS = "fixations.csv"
GAZE = "gaze.csv"
ELLIPSES = "anomaly_location_ellipses.csv"
CHEST_BOX = "chest_bounding_box.csv"
TIMESTAMPS = "timestamps_transcription.csv"
TRANSCRIPTION = "transcription.txt"

METADATA_COLUMNS: tuple[str, ...] = (
    "id", "split", "eye_tracking_data_discarded", "image", "dicom_id", "subject_id", "image_size_x", "image_size_y",
)
"""Leading metadata columns; the phase's label columns follow in sorted order."""

LABELS_PHASE_1: tuple[str, ...] = (
    "Airway wall thickening", "Atelectasis", "Consolidation", "Emphysema", "Enlarged cardiac silhouette",
    "Fibrosis", "Fracture", "Groundglass opacity", "Mass", "Nodule", "Other", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary edema", "Quality issue", "Support devices", "Wide mediastinum",
)
LABELS: tuple[str, ...] = (
    "Abnormal mediastinal contour", "Acute fracture", "Atelectasis", "Consolidation", "Enlarged cardiac silhouette",
    "Enlarged hilum", "Groundglass opacity", "Hiatal hernia", "High lung volume / emphysema",
    "Interstitial lung disease", "Lung nodule or mass", "Other", "Pleural abnormality", "Pneumothorax",
    "Pulmonary edema", "Support devices",
)
"""Phases 2–3 label set: the one stored in converted files."""

PHASE_1_TO_LABELS: dict[str, str | None] = {
    "Airway wall thickening": None,
    "Atelectasis": "Atelectasis",
    "Consolidation": "Consolidation",
    "Emphysema": "High lung volume / emphysema",
    "Enlarged cardiac silhouette": "Enlarged cardiac silhouette",
    "Fibrosis": "Interstitial lung disease",
    "Fracture": "Acute fracture",
    "Groundglass opacity": "Groundglass opacity",
    "Mass": "Lung nodule or mass",
    "Nodule": "Lung nodule or mass",
    "Other": "Other",
    "Pleural effusion": "Pleural abnormality",
    "Pleural thickening": "Pleural abnormality",
    "Pneumothorax": "Pneumothorax",
    "Pulmonary edema": "Pulmonary edema",
    "Quality issue": None,
    "Support devices": "Support devices",
    "Wide mediastinum": "Abnormal mediastinal contour",
}
"""Phase-1 label → phase-2/3 label (None: no counterpart, dropped). Several phase-1 labels
mapping to one label take the highest certainty. The mapping follows the label definitions
of the REFLACX paper: the phase-2/3 set merged nodule and mass, effusion and pleural
thickening into "Pleural abnormality", renamed emphysema, fibrosis (→ interstitial lung
disease), fracture (→ acute fracture) and wide mediastinum (→ abnormal mediastinal contour),
and dropped airway wall thickening and quality issue."""

BOOLEAN_LABELS = ("Support devices", "Quality issue")
"""Labels recorded True/False instead of a certainty (True is stored as certainty 5)."""
TEXT_LABELS = ("Other",)
"""Free-text labels (a non-empty text is stored as certainty 5)."""

PRESENT_CERTAINTY = 3
"""The authors count a label present at certainty >= 3 (of 0–5)."""

FIXATION_COLUMNS: tuple[str, ...] = (
    "timestamp_start_fixation", "timestamp_end_fixation", "x_position", "y_position", "pupil_area_normalized",
    "angular_resolution_x_pixels_per_degree", "angular_resolution_y_pixels_per_degree", "window_width",
    "window_level", "xmin_shown_from_image", "ymin_shown_from_image", "xmax_shown_from_image",
    "ymax_shown_from_image", "xmin_in_screen_coordinates", "ymin_in_screen_coordinates",
    "xmax_in_screen_coordinates", "ymax_in_screen_coordinates",
)
GAZE_COLUMNS: tuple[str, ...] = ("timestamp_sample", *FIXATION_COLUMNS[2:])
ELLIPSE_COORDINATES: tuple[str, ...] = ("xmin", "ymin", "xmax", "ymax", "certainty")
CHEST_BOX_COLUMNS: tuple[str, ...] = ("xmin", "ymin", "xmax", "ymax")
TIMESTAMP_COLUMNS: tuple[str, ...] = ("word", "timestamp_start_word", "timestamp_end_word")
SHOWN_COLUMNS: tuple[str, ...] = FIXATION_COLUMNS[9:13]


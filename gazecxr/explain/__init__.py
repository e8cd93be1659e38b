"""Explanations of a classifier's decision as maps over the image (Grad-CAM and its relatives)."""

"""The gaze-utility benchmark's difficulty pilot: the no-gaze baseline's test macro AUC at each candidate
evidence contrast, on films and training seeds the study itself never uses, so the phantom difficulty is set
before, and independently of, the main run."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gazecxr.evaluation.artifacts import json_safe, write_text_atomic
from gazecxr.evaluation.studies.gaze_utility import (StudySettings, TrainingArrays, load_split, prepare_data,
                                                     seed_mean_macro_auc, train_rows)
from gazecxr.metrics.statistics import seed_summary
from gazecxr.training.gaze_methods import train_classifier

PILOT_OFFSET = 1000
"""Added to the study's generator seed and training seeds: the pilot's films and fits are never the study's."""

TARGET = (0.70, 0.85)
"""The no-gaze baseline's iid macro AUC wanted at the largest training size: neither chance nor saturated."""


def run_pilot(config: Mapping[str, Any], contrasts: Sequence[float], out_dir: str | Path,
              progress: bool = True) -> dict[str, Any]:
    """Fit the baseline at the largest training size, each seed, each evidence contrast (no shortcut, the
    smallest g; gaze unused); write ``pilot.json`` and ``pilot.md`` to ``out_dir``."""
    import torch

    started = time.time()
    study = StudySettings.from_config(config)
    size = max(study.train_sizes)
    torch.set_num_threads(study.threads)
    rows = []
    for contrast in tqdm(contrasts, desc="gaze-utility pilot", unit="contrast", disable=not progress):
        settings = replace(study, knobs=replace(study.knobs, evidence_contrast=float(contrast)),
                           generator_seed=study.generator_seed + PILOT_OFFSET, informativeness=(0.0,),
                           shortcuts=(0.0,), data_root=study.data_root / "pilot")
        data = prepare_data(settings, progress=False, shifted=False)
        path = data.files[(0.0, 0.0)]
        train = TrainingArrays(load_split(path, "train", train_rows(path, size, settings.generator_seed)),
                               load_split(path, "val"))
        test = load_split(path, "test")
        aucs = []
        for seed in range(study.seeds):
            fitted = train_classifier("baseline", train, study.train, PILOT_OFFSET + seed)
            aucs.append(seed_mean_macro_auc(test.labels, [fitted.predict(test.images, None)]))
        rows.append({"evidence_contrast": float(contrast), "train_size": size, "auc_iid": seed_summary(aucs),
                     "in_target": TARGET[0] <= sum(aucs) / len(aucs) <= TARGET[1]})
    report = json_safe({"target": list(TARGET), "rows": rows, "generator_seed": study.generator_seed + PILOT_OFFSET,
                        "knobs": study.knobs.as_dict(), "train": study.train.__dict__,
                        "wall_seconds": time.time() - started})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Gaze-utility pilot (target no-gaze iid macro AUC {TARGET[0]}–{TARGET[1]} at n = {size})", "",
             "| Evidence contrast | Macro AUC (mean ± sd over seeds) | In target |", "|---|---|---|"]
    for r in report["rows"]:
        a = r["auc_iid"]
        sd = "" if a.get("std") is None else f" ± {a['std']:.3f}"
        lines.append(f"| {r['evidence_contrast']:g} | {a['mean']:.3f}{sd} | {'yes' if r['in_target'] else 'no'} |")
    write_text_atomic(out / "pilot.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "pilot.md", "\n".join(lines) + "\n")
    return report

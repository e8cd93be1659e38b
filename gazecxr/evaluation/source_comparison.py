"""Does REFLACX gaze help? The saliency model trained on EGD-CXR + REFLACX against the same model
trained on EGD-CXR alone, both tested on one joint, patient-grouped test split: scores per source
and pooled, paired tests between the two, and both scored against single readers beside the
inter-reader ceiling.

    python -m gazecxr.evaluation.source_comparison --config configs/test.yaml \\
        --egd data/egd.h5 --reflacx data/reflacx.h5 --out reports/sources
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from gazecxr.cli.options import prog_name, run_main
from gazecxr.config import add_config_arguments, load_config
from gazecxr.data.dataset import GazeCXRDataset
from gazecxr.evaluation.comparisons import add_bootstrap_arguments
from gazecxr.evaluation.consistency import INTER_READER, ReaderConsistency, fixation_map
from gazecxr.evaluation.saliency_methods import entry_predictor, score_maps
from gazecxr.evaluation.tables import REFLACX_ANCHORS
from gazecxr.metrics.statistics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PatientBootstrap,
    adjust_family,
    paired_score_tests,
)
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device
from gazecxr.training.stages import run_stage2

RUNS: dict[str, list[str] | None] = {"egd_only": ["EGD-CXR"], "egd+reflacx": None}
"""Training runs: name → datasets whose records train the model (None: all)."""
METRICS = ("kl", "cc", "hs", "nss")


def _config_for(config: Mapping[str, Any], files: list[str], sources: list[str] | None, variant: str) -> dict:
    cfg = copy.deepcopy(dict(config))
    cfg["data"] = {**cfg["data"], "h5": files, "sources": sources}
    cfg["stage2"] = {**cfg["stage2"], "variant": variant}
    return cfg


def score_split(entries: Mapping[str, Entry], registry: Registry, dataset: GazeCXRDataset,
                device: torch.device, batch_size: int) -> tuple[dict[str, dict[str, np.ndarray]], ReaderConsistency]:
    """Per-record scores of each entry's saliency maps on ``dataset`` and its inter-reader comparison."""
    predictors = [entry_predictor(registry, entry, name, device) for name, entry in entries.items()]
    consistency = ReaderConsistency(dataset, list(entries))
    scores: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in METRICS} for name in entries}
    position = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        indices = [int(i) for i in batch["index"]]
        regions = torch.zeros(len(indices), *dataset.canvas, dtype=torch.bool)
        for mask, index in zip(regions, indices):
            mask[dataset.letterbox(index).region] = True
        gt = batch["heatmap"][:, 0].double().numpy()
        fixated = np.stack([fixation_map(dataset.fixations(i), dataset.canvas) for i in indices])
        maps = {}
        with torch.no_grad():
            for predictor in predictors:
                for name, out in predictor(batch["image"].to(device), regions.to(device)).saliency.items():
                    maps[name] = out.detach().cpu().double().numpy()
        for name, pred in maps.items():
            for metric, values in score_maps(pred, gt, fixated).items():
                if metric in METRICS:
                    scores[name][metric].append(values)
        for i in range(len(indices)):
            consistency.add({"position": position + i, **{name: pred[i] for name, pred in maps.items()}})
        position += len(indices)
    return {n: {m: np.concatenate(v) for m, v in by.items()} for n, by in scores.items()}, consistency


def _summary(values: np.ndarray, boot: PatientBootstrap) -> dict[str, Any]:
    """Mean, std and count of the finite ``values`` and the mean's patient-bootstrap interval (``ci``)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "ci": None}
    cell = boot.mean(values)
    return {"mean": float(finite.mean()), "std": float(finite.std()), "n": int(finite.size), "ci": cell["ci"],
            "ci_method": cell["method"]}


def summarise(scores: Mapping[str, Mapping[str, np.ndarray]], sources: np.ndarray,
              patients: np.ndarray | None = None, bootstrap: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Mean/std per method, metric and source (plus "pooled") with the mean's interval (``bootstrap``
    resamples of the records' ``patients``, each record its own patient when None; 0: none), and paired
    t-tests and Wilcoxon tests between the methods, Holm-adjusted within each metric's family (the sources)."""
    groups = {"pooled": np.ones(len(sources), bool), **{str(s): sources == s for s in np.unique(sources)}}
    patients = np.asarray(patients if patients is not None else np.arange(len(sources)), str)
    names = list(scores)
    out: dict[str, Any] = {"by_source": {}, "tests": []}
    for group, keep in groups.items():
        boot = PatientBootstrap(patients[keep], bootstrap, seed)
        out["by_source"][group] = {name: {m: _summary(v[keep], boot) for m, v in scores[name].items()}
                                   for name in names}
        for metric in METRICS:
            a, b = scores[names[1]][metric][keep], scores[names[0]][metric][keep]
            if (np.isfinite(a) & np.isfinite(b)).sum() >= 2:
                out["tests"].append({"source": group, "metric": metric, "method": names[1], "reference": names[0],
                                     **paired_score_tests(a, b)})
    for metric in METRICS:
        for key in ("p", "wilcoxon_p"):
            adjust_family([t for t in out["tests"] if t["metric"] == metric], key)
    return out


def compare(config: Mapping[str, Any], egd_h5: str | Path, reflacx_h5: str | Path, out_dir: str | Path,
            variant: str = "resse", progress: bool = True, bootstrap: int = DEFAULT_RESAMPLES,
            seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Train the stage-2 ``variant`` once per :data:`RUNS` entry and compare them; writes
    ``out_dir/comparison.json`` and ``comparison.md`` and returns the JSON content."""
    files = [str(egd_h5), str(reflacx_h5)]
    entries = {name: run_stage2(_config_for(config, files, sources, variant), progress=progress,
                                tags=[f"compare={name}"]) for name, sources in RUNS.items()}
    registry = Registry(config["registry"]["root"])
    device = resolve_device(config["train"]["device"])
    test = GazeCXRDataset(files, "test")
    scores, consistency = score_split(entries, registry, test, device, int(config["train"]["batch_size"]))
    train_counts = {name: len(GazeCXRDataset(files, "train", sources=sources)) for name, sources in RUNS.items()}
    result = {"variant": variant, "data": files, "train_records": train_counts,
              "test_records": {str(s): int(c) for s, c in zip(*np.unique(test.sources, return_counts=True))},
              "entries": {name: e.id for name, e in entries.items()},
              **summarise(scores, np.asarray(test.sources, str), np.asarray(test.patient_ids, str), bootstrap, seed),
              "inter_reader": consistency.summary(bootstrap, seed)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
    (out / "comparison.md").write_text(markdown(result))
    return result


def _cell(summary: Mapping[str, Any], interval: Mapping[str, Any] | None = None) -> str:
    text = f"{summary['mean']:.3f} ± {summary['std']:.3f}"
    ci = summary.get("ci") if interval is None else interval.get("ci")
    return text if ci is None else f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def markdown(result: Mapping[str, Any]) -> str:
    """Tables: scores per source and pooled; against single readers with the inter-reader row."""
    lines = [f"# Saliency ({result['variant']}) trained on EGD-CXR + REFLACX vs EGD-CXR alone", "",
             f"Train records: {result['train_records']}; test records: {result['test_records']}.", "",
             "| test records | model | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for group, by_model in result["by_source"].items():
        for name, by_metric in by_model.items():
            lines.append(f"| {group} (n={by_metric['kl']['n']}) | {name} | "
                         + " | ".join(_cell(by_metric[m]) for m in METRICS) + " |")
    lines += ["", "Paired t-tests and Wilcoxon signed-rank tests (egd+reflacx − egd_only); Holm–Bonferroni within "
              "each metric's family (the test record groups), raw and adjusted p:", "",
              "| test records | metric | mean diff | t-test p | p (Holm) | Wilcoxon p | p (Holm) |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['source']} | {t['metric']} | {t['mean_diff']:.4f} | {_p(t['p'])} | {_p(t.get('p_holm'))} | "
              f"{_p(t['wilcoxon_p'])} | {_p(t.get('wilcoxon_p_holm'))} |" for t in result["tests"]]
    inter = result["inter_reader"]
    lines += ["", REFLACX_ANCHORS, "", "## Against single readers (test images with two or more readers)", ""]
    if not inter.get("images"):
        lines.append(inter["note"])
    else:
        lines += [inter["note"], "", "| row | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for name in [INTER_READER, *[n for n in inter["scores"] if n != INTER_READER]]:
            lines.append(f"| {name} | " + " | ".join(
                _cell(inter["scores"][name][m], inter.get("intervals", {}).get(name, {}).get(m))
                if m in inter["scores"][name] else "–" for m in METRICS) + " |")
        lines += ["", "| model vs inter-reader | metric | mean diff | t-test p | p (Holm) | Wilcoxon p | p (Holm) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {t['method']} | {t['metric']} | {t['mean_diff']:.4f} | {_p(t['p'])} | {_p(t.get('p_holm'))} | "
                  f"{_p(t['wilcoxon_p'])} | {_p(t.get('wilcoxon_p_holm'))} |"
                  for t in inter["tests"] if t["metric"] in METRICS]
    return "\n".join(lines) + "\n"


@run_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog_name("python -m gazecxr.evaluation.source_comparison"),
                                     description=__doc__.split("\n\n")[0])
    add_config_arguments(parser)
    parser.add_argument("--egd", required=True, help="EGD-CXR HDF5 file (data_prep.egd_cxr)")
    parser.add_argument("--reflacx", required=True, help="REFLACX HDF5 file (data_prep.reflacx), same canvas")
    parser.add_argument("--out", default="reports/sources", help="folder for comparison.json / comparison.md")
    parser.add_argument("--variant", choices=("resse", "unet", "full"), default="resse",
                        help="stage-2 model: resse (Res-SE UNet, no stage 1 needed), unet, or full (needs a "
                             "stage-1 entry, stage2.encoder)")
    add_bootstrap_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    result = compare(config, args.egd, args.reflacx, args.out, args.variant, progress=not args.quiet,
                     bootstrap=args.bootstrap, seed=args.bootstrap_seed)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

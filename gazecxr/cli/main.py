"""``gazecxr``: one command for the whole flow, each subcommand the same code as its ``python -m`` twin.

The subcommands are data: :data:`COMMANDS` maps a command (``"train stage1"``: group and name, or
a single word) to the twin's ``"module:function"`` — a ``main(argv) -> int`` — and a one-line help.
``gazecxr GROUP NAME ARGS…`` imports that module and calls the function with ``ARGS``; nothing is
imported before a command is chosen, so ``gazecxr --help`` is instant. Add a command by adding a line.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gazecxr import __version__
from gazecxr.cli.options import DEBUG_ENV, set_debug, set_prog_name

COMMANDS: dict[str, tuple[str, str]] = {
    # data: raw datasets -> the HDF5 training file
    "synthetic": ("data_prep.synthetic:main", "write a synthetic dataset in a raw layout: EGD-CXR, REFLACX, NIH-14, SIIM, CheXpert, VinDr"),
    "convert egd-cxr": ("data_prep.egd_cxr:main", "EGD-CXR gaze + MIMIC-CXR images -> HDF5 training file"),
    "convert reflacx": ("data_prep.reflacx:main", "REFLACX readings + MIMIC-CXR images -> HDF5 training file"),
    "convert nih14": ("data_prep.nih14:main", "NIH ChestX-ray14 tables, boxes and PNGs -> HDF5 (findings + boxes)"),
    "convert siim": ("data_prep.siim:main", "SIIM-ACR pneumothorax RLE masks + DICOMs -> HDF5 (label + masks)"),
    "convert cxr-p": ("data_prep.cxr_p:main", "CXR-P gaze on SIIM-ACR films + masks -> HDF5 (heatmaps, label, masks)"),
    "convert chexpert": ("data_prep.chexpert:main", "CheXpert tables + JPEGs -> HDF5 (14 observations, uncertain labels)"),
    "convert vindr": ("data_prep.vindr:main", "VinDr-CXR readers' boxes + DICOMs -> HDF5 (findings + boxes)"),
    "data": ("gazecxr.data.__main__:main", "inspect converted HDF5 files (data summary FILE…)"),
    # configuration and models
    "config": ("gazecxr.config.__main__:main", "list the presets; show a resolved, validated config"),
    "models": ("gazecxr.models.__main__:main", "parameter count of every network a config builds"),
    # training
    "train stage1": ("stages.stage1:main", "stage 1: DenseNet, contrastive pretraining + fine-tuning"),
    "train stage2": ("stages.stage2:main", "stage 2: Res-SE UNet saliency on the frozen stage-1 DenseNet"),
    "train stage3": ("stages.stage3:main", "stage 3: fusion classifier on the frozen DenseNet and UNet"),
    "train peer": ("stages.peer:main", "a peer method (MT-UNet, GazeGNN, Inception-ResNet-v2) or gaze mechanism "
                                       "(gaze_token_mask, gdvig, gaze_mtl)"),
    "tune": ("stages.tune:main", "optuna hyperparameter study of one stage"),
    # evaluation
    "evaluate": ("stages.evaluate:main", "score a trained model on a split: metrics, tests, tables, figures"),
    "ablate": ("stages.ablate:main", "train and compare every method of the paper's tables over seeds"),
    "study explain": ("stages.explain:main",
                      "which architecture's CAM falls on the radiologists' regions ([explain] extra)"),
    "gaze-utility": ("stages.gaze_utility:main",
                     "synthetic benchmark: gain from gaze vs its informativeness, per method and training size"),
    "compare-sources": ("gazecxr.evaluation.source_comparison:main",
                        "EGD-CXR vs REFLACX gaze on the same images"),
    # models in use
    "registry": ("gazecxr.training.registry:main", "list, show and verify the saved models"),
    "export": ("gazecxr.inference.export:main", "export a trained model: ONNX file or shareable pretrained folder"),
    "predict": ("gazecxr.predict:main", "saliency + diagnosis for radiographs (DICOM, PNG, JPEG)"),
    "app": ("gazecxr.inference.app:main", "local viewer in the browser (needs the [app] extra)"),
    "bench": ("bench.__main__:main", "benchmarks (source checkout only)"),
}
"""Command → ("module:function", one-line help), in the order of the flow (``gazecxr --help``)."""

REPO_ONLY = {"bench"}
"""Top-level packages of the source checkout that are not installed with gazecxr."""


def _groups() -> dict[str, dict[str, str]]:
    """Group → {name → command}; a single-word command is its own group with name ''."""
    out: dict[str, dict[str, str]] = {}
    for command in COMMANDS:
        group, _, name = command.partition(" ")
        out.setdefault(group, {})[name] = command
    return out


def overview() -> str:
    """The text of ``gazecxr --help``: every command in flow order, one line each."""
    width = max(len(c) for c in COMMANDS) + 2
    lines = [f"usage: gazecxr [--debug] COMMAND [ARGS…]   (gazecxr COMMAND --help for its options)", "",
             "Gaze-guided chest X-ray interpretation, from raw data to predictions. Commands, in the order of the flow:",
             ""]
    lines += [f"  {command:<{width}}{help_text}" for command, (_, help_text) in COMMANDS.items()]
    lines += ["", "Flags mean the same in every command: --config NAME|PATH (a preset such as paper, demo, test, or a",
              "YAML file), --set KEY=VALUE (override a config value), --checkpoints DIR (registry root),",
              "--checkpoint REF (registry entry: id, id prefix, latest, best or tag), --out DIR (output).",
              "Each command runs the same code as its python -m twin (gazecxr train stage1 = python -m stages.stage1).",
              "Errors in what you gave (config, files, names) print one line; anything else is a bug and shows",
              f"its traceback. --debug (or {DEBUG_ENV}=1) shows the traceback of every error.",
              "", "options:", "  -h, --help  show this message and exit", "  --version   print the version and exit",
              "  --debug     show tracebacks also for errors in the input"]
    return "\n".join(lines)


def _group_help(group: str, names: dict[str, str]) -> str:
    width = max(len(n) for n in names) + 2
    lines = [f"usage: gazecxr {group} {{{','.join(names)}}} [ARGS…]", ""]
    lines += [f"  {name:<{width}}{COMMANDS[command][1]}" for name, command in names.items()]
    lines += ["", f"gazecxr {group} NAME --help shows a command's options."]
    return "\n".join(lines)


def _unknown(word: str, valid: Sequence[str], what: str) -> int:
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    print(f"gazecxr: error: unknown {what} {word!r}{hint}; choose from {', '.join(valid)}", file=sys.stderr)
    return 2


def source_checkout() -> Path | None:
    """The repository root when gazecxr runs from a source checkout (editable install), else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "setup.cfg").is_file() and (root / "gazecxr" / "cli" / "main.py").is_file() else None


def load_command(command: str) -> Callable[[list[str]], int]:
    """The ``main(argv)`` of ``command`` (imports its module); repo-only commands need the checkout."""
    target, _ = COMMANDS[command]
    module_name, _, function = target.partition(":")
    top = module_name.split(".")[0]
    if top in REPO_ONLY:
        root = source_checkout()
        if root is None or not (root / top / "__main__.py").is_file():
            raise LookupError(f"'gazecxr {command}' needs the source checkout: the {top!r} package ships with the "
                              f"repository, not with the installed gazecxr (clone the repository, pip install -e . "
                              f"there and run it from that checkout)")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    return getattr(importlib.import_module(module_name), function)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gazecxr``: dispatch to a subcommand's ``main``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = bool(args) and args[0] == "--debug"
    if debug:
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"gazecxr {__version__}")
        return 0
    groups = _groups()
    group, rest = args[0], args[1:]
    if group not in groups:
        return _unknown(group, list(groups), "command")
    names = groups[group]
    if "" in names:
        command = names[""]
    elif not rest or rest[0] in ("-h", "--help"):
        print(_group_help(group, names))
        return 0 if rest else 2
    elif rest[0] not in names:
        return _unknown(rest[0], list(names), f"'{group}' command")
    else:
        command, rest = f"{group} {rest[0]}", rest[1:]
    try:
        entry = load_command(command)
    except LookupError as err:
        print(f"gazecxr: error: {err}", file=sys.stderr)
        return 2
    set_prog_name(f"gazecxr {command}")
    set_debug(debug)
    try:
        code = entry(rest)
    finally:
        set_prog_name(None)
        set_debug(False)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

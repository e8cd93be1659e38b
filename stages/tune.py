"""`python -m stages.tune --stage {1,2,3} --config FILE --trials N [--storage URL] [--study NAME] ...`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from gazecxr.cli.options import add_checkpoints_argument, add_out_argument, checkpoints_override, prog_name, run_main
from gazecxr.config import add_config_arguments, load_config
from gazecxr.training.tuning import default_study_name, load_space, tune

DESCRIPTION = """\
Tune the hyperparameters of one training stage with an optuna study: a TPE sampler seeded with
the config seed (plus the number of trials the study already holds), and median pruning fed by
every epoch's validation metric. The objective is the stage's monitored validation metric at its
best epoch: val_auc_macro (maximised) for stages 1 and 3, val_kl (minimised) for stage 2.
The search space is YAML (--space NAME|PATH, default the shipped tune/stage<N>): dotted config keys mapped
to distributions (float/int with low, high, log; categorical with choices), applied as --set
overrides, plus the pruner (median | percentile | threshold | none) and TPE sampler options.
Every trial trains with python -m stages.stage<N> semantics in runs.root/tune/<study>/trial-<n>,
and its best model is saved to the registry tagged study=<study> and trial=<n> (the entry id is
the trial's user attr entry_id). A trial that raises (CUDA out of memory, a bad setting, ...) is
recorded as FAIL with the error in its user attr 'error', and the study goes on. Stage 2/3
studies pin the entry they build on (stage2.encoder / stage3.saliency) when created, so all
trials are comparable."""

EPILOG = """\
Resuming: the study lives in --storage (default sqlite:///<registry.root>/optuna.db) under --study
(default stage<N>-<config file name>); running the same command again adds --trials more trials.
After the trials, the best trial's config (the --config file with its --set overrides and the
best params, fully resolved, inheriting nothing) is written to <out>/<study>.yaml (--out) and
printed with its value; train it with gazecxr train stage<N> --config <that file>.

Sharing a study across machines: run the same command on every worker with the same --storage
URL and the same --study name; each worker adds its --trials trials to the one study (optuna
loads it if it exists). Use a database server all workers reach, any SQLAlchemy URL, e.g.
--storage postgresql://user:password@dbhost/optuna (with a driver such as psycopg2 installed) or
mysql+pymysql://...; an SQLite file serves workers on one machine only (not over NFS). Workers
that start at the same moment should pass different --sampler-seed values. Trials of a worker
that dies are marked FAIL after 5 minutes without a heartbeat. Stage 2/3 workers need the pinned
parent entry in their registry.root (share the registry directory, or copy that entry).

Example: gazecxr tune --stage 1 --config paper --trials 30 --timeout 86400"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m stages.tune`` argument parser."""
    parser = argparse.ArgumentParser(prog=prog_name("python -m stages.tune"), description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=int, required=True, choices=(1, 2, 3), help="stage to tune")
    add_config_arguments(parser, "base YAML config (configs/paper.yaml, ...)")
    parser.add_argument("--trials", type=int, required=True, help="trials this worker adds to the study")
    parser.add_argument("--space", default=None, help="search space: a shipped name (tune/stage1, ...) or a YAML path (default: tune/stage<N>)")
    parser.add_argument("--storage", default=None,
                        help="SQLAlchemy URL of the study database (default: sqlite:///<registry.root>/optuna.db)")
    parser.add_argument("--study", default=None, help="study name (default: stage<N>-<config file name>)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop starting new trials after this many seconds")
    add_checkpoints_argument(parser, default=None)
    add_out_argument(parser, "where the best config is written as <study>.yaml (default: %(default)s)",
                     default="configs/tuned", old=("--export-dir",))
    parser.add_argument("--sampler-seed", type=int, default=None,
                        help="TPE seed base (default: the config seed); differ it between concurrent workers")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch training output")
    return parser


@run_main
def main(argv: list[str] | None = None) -> int:
    """Run the study, print its best trial and exported config; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config, [*args.overrides, *checkpoints_override(args.checkpoints)])
    space = load_space(args.space or f"tune/stage{args.stage}")
    result = tune(config, args.stage, space, args.trials, args.study or default_study_name(args.stage, args.config),
                  storage=args.storage, timeout=args.timeout, export_dir=args.out,
                  sampler_seed=args.sampler_seed, progress=not args.quiet)
    states = ", ".join(f"{n} {state}" for state, n in sorted(result.states.items()))
    print(f"study {result.study_name} in {result.storage}: {states}")
    if result.export_path is None:
        print("no trial has completed yet: nothing exported", file=sys.stderr)
        return 1
    print(result.export_path.read_text(encoding="utf-8"))
    print(f"best trial {result.best_number}: {result.metric} = {result.best_value:.6g} ({result.direction}); "
          f"params {json.dumps(result.best_params)}")
    print(f"exported: {result.export_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from bench.common import save_untrained_lineage
from gazecxr.training.registry import Registry
from gazecxr.training.checkpoint_io import load_saliency
from gazecxr.training.data import make_loader
from gazecxr.training.distributed import (
    SINGLE,
    DistContext,
    broadcast_object,
    current,
    gather_outputs,
    sum_across,
)
from gazecxr.training.stages import run_stage2
from gazecxr.training.objectives import SaliencyTask
from tests_paths import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        ctx = current()
        records = list(range(10, 15))  # 5 records: the 2-rank sampler pads rank 1's shard with a duplicate
        shard = list(DistributedSampler(records, num_replicas=world, rank=rank, shuffle=False))
        index = torch.tensor([records[i] for i in shard])
        outputs = {"index": index, "value": index.double() * 10, "pair": torch.stack([index, -index], 1)}
        gathered = gather_outputs(outputs, ctx)
        result = {"rank": ctx.rank, "world": ctx.world_size, "shard": shard,
                  "index": gathered["index"].tolist(), "value": gathered["value"].tolist(),
                  "pair": gathered["pair"].tolist(), "sums": sum_across([1.0, float(rank)], ctx),
                  "broadcast": broadcast_object({"from": rank}, ctx)}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
            json.dump(result, fh)
    finally:
        dist.destroy_process_group()


def test_gathered_outputs_cover_the_split_once_in_order(tmp_path):
    mp.start_processes(_gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["shard"] == [0, 2, 4] and results[1]["shard"] == [1, 3, 0]  # padded with record 0
    for r, result in enumerate(results):
        assert result["rank"] == r and result["world"] == 2
        assert result["index"] == [10, 11, 12, 13, 14]
        assert result["value"] == [100.0, 110.0, 120.0, 130.0, 140.0]
        assert result["pair"] == [[i, -i] for i in range(10, 15)]
        assert result["sums"] == [2.0, 1.0]
        assert result["broadcast"] == {"from": 0}


def test_single_process_helpers_are_identity():
    assert current() == SINGLE and not SINGLE.enabled and SINGLE.is_main
    outputs = {"index": torch.tensor([3, 1]), "x": torch.tensor([0.5, 0.25])}
    assert gather_outputs(outputs, SINGLE) is outputs
    assert sum_across([1.0, 2.0], SINGLE) == [1.0, 2.0] and broadcast_object(7, SINGLE) == 7
    assert DistContext(rank=1, world_size=2).enabled and not DistContext(rank=1, world_size=2).is_main


def _torchrun(config, *extra):
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", "--local-ranks-filter=0",
               "-m", "stages.stage2", "--config", str(ROOT / "configs" / "test.yaml"), "--quiet",
               "--set", f"data.h5={config['data']['h5']}", "--set", f"registry.root={config['registry']['root']}",
               "--set", f"runs.root={config['runs']['root']}", *extra]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout[out.stdout.index("{"):])


def test_stage2_under_torchrun_saves_one_entry_with_full_validation(tiny_config):
    save_untrained_lineage(tiny_config, stages=1)
    registry = Registry(tiny_config["registry"]["root"])
    printed = _torchrun(tiny_config)
    entries = registry.entries(stage="stage2")
    assert [e.id for e in entries] == [printed["id"]]
    entry = entries[0]
    assert entry.metrics == printed["metrics"]

    single = run_stage2({**tiny_config, "train": {**tiny_config["train"], "max_epochs": 1}}, progress=False)
    assert set(single.metrics) == set(entry.metrics) == {"val_kl", "val_cc", "val_hs", "epochs", "train_seconds",
                                                         "parameters"}
    assert entry.metrics["parameters"] == single.metrics["parameters"] > 0 and entry.metrics["train_seconds"] > 0
    assert all(isinstance(v, float) for v in entry.metrics.values()) and entry.metrics["epochs"] == 2.0

    # the metrics the two ranks agreed on are those of the saved weights over the whole val split
    unet, encoder, _ = load_saliency(registry, entry.id)
    task = SaliencyTask(unet, encoder)
    task.eval()
    loader = make_loader(tiny_config, "val", 3, train=False)
    assert len(loader.dataset) % 2 == 1  # so the distributed sampler had to pad a shard
    with torch.no_grad():
        metrics = task.evaluate(iter(loader))
    for key in ("val_kl", "val_cc", "val_hs"):
        assert metrics[key] == pytest.approx(entry.metrics[key], rel=1e-5, abs=1e-7), key

    run_dir = next(t.split("=", 1)[1] for t in entry.tags if t.startswith("run="))
    run_path = ROOT / tiny_config["runs"]["root"] / "stage2" / run_dir
    log = [json.loads(line) for line in (run_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert len(torch.load(run_path / "state.pt", weights_only=True)["rank_rng"]) == 2
    resumed = _torchrun(tiny_config, "--resume", "--run-dir", str(run_path))
    assert resumed["metrics"] == entry.metrics and resumed["id"] != entry.id
    assert len(registry.entries(stage="stage2")) == 3  # the two torchrun runs and the single-process one

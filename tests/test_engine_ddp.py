import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from ssdlib.config import load_config
    from ssdlib.engine import train

    torch.set_num_threads(1)
    out, overrides = sys.argv[1], sys.argv[2:]
    result = train(load_config("shapes", overrides), out, resume=False, progress=False)
    rank = dist.get_rank()
    torch.save({"params": dict(result.model.named_parameters()), "losses": result.losses,
                "world": dist.get_world_size()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()
""")

OVERRIDES = [
    "model.width=0.25", "train.batch_size=2", "data.num_train=16", "data.source_size=128",
    "data.num_workers=0", "train.max_iter=3", "train.checkpoint_period=3", "train.log_period=1",
    "train.warmup_iters=1", "train.lr=0.01", "train.lr_steps=[100]", "train.device=cpu",
]  # fmt: skip


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_torchrun_two_cpu_ranks_end_with_identical_weights(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           "--nproc_per_node=2", str(script), str(tmp_path), *OVERRIDES]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2
    assert r0["params"].keys() == r1["params"].keys()
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    # Different samples per rank (rank-strided), so the local losses differ...
    assert r0["losses"] != r1["losses"]
    # ...and only rank 0 wrote the checkpoint and the metrics.
    assert (tmp_path / "model_0000003.pth").is_file()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3

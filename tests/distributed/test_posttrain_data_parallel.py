"""Post-training under DDP on CPU: 2 processes train like 1 process with the whole batch, heads included."""

import json
import os
import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ddp_posttrain.py"
LAUNCH_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_post_train_like_one(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from ddp_posttrain import training_function

    single = training_function(Namespace(output=str(tmp_path / "one"), per_device_batch=4))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), str(SCRIPT), "--output", str(tmp_path / "two"),
               "--per-device-batch", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    (tmp_path / "two").mkdir()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    double = json.loads((tmp_path / "two" / "result.json").read_text())

    for method, outcome in double.items():
        assert outcome["world_size"] == 2 and outcome["rank_difference"] == 0.0, method  # ranks in sync
    for method in ("asft", "dpo", "cql"):  # deterministic settings: same update as one process
        difference = (torch.tensor(double[method]["weights"]) - torch.tensor(single[method]["weights"])).abs().max()
        assert difference < 1e-5, f"{method}: {difference}"

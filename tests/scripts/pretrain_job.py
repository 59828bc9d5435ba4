"""A pretraining job the reliability tests can SIGKILL at a chosen step and resume."""

import argparse
import os
import signal

from transformers import TrainerCallback

from hf_genrec.workflows.pretrain import pretrain


class KillAtStep(TrainerCallback):
    """SIGKILL this process right after optimiser step `step` (no cleanup, like an OOM kill)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    callbacks = [KillAtStep(args.kill_at_step)] if args.kill_at_step else None
    pretrain(args.data, args.output, recipe=args.recipe, resume=args.resume, callbacks=callbacks)


if __name__ == "__main__":
    main()

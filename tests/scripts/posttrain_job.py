"""An A-SFT post-training job the reliability tests can SIGKILL at a chosen step and resume."""

import argparse
import os
import signal

from transformers import TrainerCallback

from hf_genrec.commands.posttrain import posttrain


class KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--data", "--model", "--output", "--recipe"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    callbacks = [KillAtStep(args.kill_at_step)] if args.kill_at_step else None
    posttrain(args.data, args.model, args.output, method="asft", recipe=args.recipe, resume=args.resume,
              callbacks=callbacks)


if __name__ == "__main__":
    main()

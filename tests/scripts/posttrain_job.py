"""An A-SFT post-training job the reliability tests can SIGKILL at a chosen step and resume."""

import argparse

from pretrain_job import KillAtStep  # this script's folder is on sys.path when it runs

from hf_genrec.workflows.posttrain import posttrain


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

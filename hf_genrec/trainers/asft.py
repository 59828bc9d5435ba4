"""A-SFT: advantage-weighted supervised fine-tuning (Netflix Technology Blog, Oct 2025), the product's centre.

    L = −mean_p w_p · log π_θ(y_p | x_p),   w = min(exp(A / λ), w_max),   A = r − b(x)

over every supervised position of the logged sequences (brief, section 4). No propensity scores and no
online queries: the reward r is the logged one (or the reward ensemble's estimate for the logged item),
and the baseline b(x) is the ensemble's value estimate, the user's mean past reward, or 0 — with b = 0 this
is the exponential reward-weighted SFT of arXiv 2603.10279. λ → ∞ gives plain SFT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.columns import ATTENTION_MASK, LABEL_RATINGS, LABELS, RATINGS
from ..data.history import History
from ..losses.asft import advantage_weights, user_mean_baseline
from .policy import PREPARED, PostTrainConfig, supervised_mask
from .sft import POSITION_WEIGHTS, SFTTrainer

ASFT_BASELINES = ("value", "user_mean", "zero")
ASFT_REWARD_SOURCES = ("observed", "model")


@dataclass
class ASFTConfig(PostTrainConfig):
    r"""
    Configuration of [`ASFTTrainer`].

    Args:
        temperature (`float`, *optional*, defaults to `1.0`):
            λ > 0 of w = exp(A / λ). It controls how far the policy moves from the logging policy: λ → ∞ is
            plain SFT, small λ concentrates on the highest-advantage items (arXiv 2603.10279 swept 0.5–1 and
            saw an inverted U).
        max_weight (`float` or `None`, *optional*, defaults to `20.0`):
            w_max, the clip of the weights (the AWR convention). `None` disables the clip.
        baseline (`str`, *optional*, defaults to `"value"`):
            b(x) of the advantage A = r − b(x): `"value"` (the reward ensemble's value estimate E[r | x] at
            the position; needs a reward model), `"user_mean"` (the mean of the user's ratings in the
            history up to the position) or `"zero"` (w = exp(r / λ), Exp-RSFT).
        reward_source (`str`, *optional*, defaults to `"observed"`):
            r: `"observed"` (the logged reward of the next item) or `"model"` (the ensemble mean R̂(x, y) of
            the logged item; needs a reward model).
        normalize_weights (`bool`, *optional*, defaults to `False`):
            Divide the weights by their mean over the optimizer step's positions (the loss is then
            Σ w · nll / Σ w).

    See [`PostTrainConfig`] for the defaults that differ from `TrainingArguments`.
    """

    temperature: float = field(
        default=1.0, metadata={"help": "λ of w = exp(A/λ); λ → ∞ is SFT (arXiv 2603.10279 swept 0.5-1)."}
    )
    max_weight: float | None = field(
        default=20.0, metadata={"help": "Clip w_max of the weights (AWR convention: 20); None for no clip."}
    )
    baseline: str = field(
        default="value",
        metadata={"help": "Baseline b(x): 'value' (reward-model value estimate), 'user_mean' (mean past "
                  "rating of the user) or 'zero' (w = exp(r/λ)).", "choices": list(ASFT_BASELINES)},
    )
    reward_source: str = field(
        default="observed",
        metadata={"help": "Reward r: 'observed' (logged) or 'model' (reward-ensemble mean of the logged item).",
                  "choices": list(ASFT_REWARD_SOURCES)},
    )
    normalize_weights: bool = field(
        default=False, metadata={"help": "Normalise the weights by their mean over the optimizer step."}
    )

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(
                f"temperature (λ) must be > 0, got {self.temperature}; use a large value (e.g. 1e6) for plain SFT."
            )
        if self.max_weight is not None and not self.max_weight > 0:
            raise ValueError(f"max_weight must be > 0 or None (no clip), got {self.max_weight}.")
        if self.baseline not in ASFT_BASELINES:
            raise ValueError(f"baseline must be one of {ASFT_BASELINES}, got {self.baseline!r}.")
        if self.reward_source not in ASFT_REWARD_SOURCES:
            raise ValueError(f"reward_source must be one of {ASFT_REWARD_SOURCES}, got {self.reward_source!r}.")
        super().__post_init__()


# `reward_power` of the tilt-matched control in `asft_ablation_grid`: the caller sets it from the training data with
# `tilt_matched_reward_power` (hf_genrec.trainers.sft) against the A-SFT run it controls for.
TILT_MATCHED = "tilt_matched"


def asft_ablation_grid() -> dict[str, tuple[str, dict[str, Any]]]:
    """The A-SFT ablations of issue 13: `{name: (method, config overrides)}`, every run under the same budget.

    The six A-SFT variants baseline {value, user_mean, zero} × reward source {observed, model}
    (`asft[baseline=...,reward=...]`; `value` and `model` need a reward model, `zero`+`observed` is Exp-RSFT and
    needs none), and `rwbc[reward_power=tilt_matched]`, RW-BC with w = r^p where p (`TILT_MATCHED`, to be replaced
    by the caller) makes the weights' tilt equal to that of the A-SFT run being explained, so a gain of A-SFT over
    it is the advantage baseline's and not the tilt's. λ, w_max and the optimiser are left to the caller, equal
    across the grid.
    """
    grid: dict[str, tuple[str, dict[str, Any]]] = {
        f"asft[baseline={baseline},reward={source}]": ("asft", {"baseline": baseline, "reward_source": source})
        for baseline in ASFT_BASELINES
        for source in ASFT_REWARD_SOURCES
    }
    grid[f"rwbc[reward_power={TILT_MATCHED}]"] = ("rwbc", {"reward_power": TILT_MATCHED})
    return grid


class ASFTTrainer(SFTTrainer):
    """Advantage-weighted SFT. The weights are computed once per optimizer step, before the forward pass
    (they need no gradient), so batch-mean normalisation covers the whole step.

    Example (TRL's shape: config -> trainer -> `train()`; `examples/trl_quickstarts.py`):

    ```python
    >>> from hf_genrec.trainers import ASFTConfig, ASFTTrainer
    >>> args = ASFTConfig("out", temperature=1.0, baseline="value")  # "user_mean" needs no reward model
    >>> trainer = ASFTTrainer("runs/ml1m-hstu", reward_model="runs/ml1m-reward", args=args,
    ...                       train_dataset=splits["train"], processing_class=vocabulary)
    >>> trainer.train()
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "asft"]
    _name = "A-SFT"
    _paper = {
        "title": "Post-Training Generative Recommenders with Advantage-Weighted Supervised Finetuning",
        "id": None,
        "url": "https://netflixtechblog.com/post-training-generative-recommenders-with-advantage-weighted-"
        "supervised-finetuning-61a538d717a9",
        "citation": "Netflix Technology Blog (2025). Post-Training Generative Recommenders with "
        "Advantage-Weighted Supervised Finetuning.",
    }

    @classmethod
    def needs_reward_model(cls, args, train_dataset=None) -> bool:
        return args.baseline == "value" or args.reward_source == "model"

    def _position_weights(self, inputs: dict[str, Any], supervised: torch.Tensor) -> torch.Tensor:
        args = self.args
        if args.reward_source == "model":
            history = History.from_batch(inputs).model_inputs()
            rewards = self.reward_model.predict_positions(**history, labels=inputs[LABELS])
            rewards = rewards.mean[supervised].float()
        else:
            rewards = inputs[LABEL_RATINGS][supervised].float()
        if args.baseline == "value":
            baselines = self.reward_model.value_positions(**History.from_batch(inputs).model_inputs())
            baselines = baselines[supervised].float()
        elif args.baseline == "user_mean":
            # Every supervised position has at least its own input event, so the fallback is never used.
            baselines = user_mean_baseline(inputs[RATINGS], inputs[ATTENTION_MASK])[supervised]
        else:
            baselines = None
        weights, clipped = advantage_weights(rewards, baselines, args.temperature, args.max_weight)

        # Log the metrics
        advantages = rewards if baselines is None else rewards - baselines
        self._record_mean("train", "rewards/mean", rewards)
        self._record_mean("train", "advantages/mean", advantages)
        self._record_mean("train", "advantages/abs_mean", advantages.abs())
        self._record_mean("train", "weights/clipped_frac", clipped.float())
        return weights

    def _loss_units(self, inputs):
        if self.args.normalize_weights:
            return inputs[PREPARED][POSITION_WEIGHTS].sum()
        return supervised_mask(inputs[LABELS]).sum()


__all__ = ["ASFTConfig", "ASFTTrainer", "ASFT_BASELINES", "ASFT_REWARD_SOURCES", "TILT_MATCHED", "asft_ablation_grid"]

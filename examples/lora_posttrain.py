# Post-train a pretrained recommender with A-SFT through a LoRA adapter on the HSTU projections.
#
# Only the low-rank adapters of each layer's `uvqk` and `o_proj` projections are trained (a few % of the
# weights); the item embeddings stay frozen. The output directory holds the merged recommender (loads with
# `AutoModelForNextItemPrediction.from_pretrained`) and the adapter alone in `adapter/`.
#   python examples/lora_posttrain.py --model runs/example-pretrain --output runs/example-lora --lora-r 8
# Everything else (data, reward model, launchers) is as in examples/posttrain_asft.py.
import argparse
import os
import sys

from peft import LoraConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from posttrain_asft import parse_args, training_function  # noqa: E402

LORA_TARGETS = ["uvqk", "o_proj"]  # the HSTU layer projections (task_type=None: not a causal LM)


def main():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--lora-r", type=int, default=8, help="Adapter rank.")
    lora, rest = parser.parse_known_args()
    args = parse_args(rest, description="A-SFT post-training with a LoRA adapter.")
    peft_config = LoraConfig(r=lora.lora_r, lora_alpha=2 * lora.lora_r, lora_dropout=0.0,
                             target_modules=LORA_TARGETS, task_type=None)
    training_function(args, peft_config=peft_config)


if __name__ == "__main__":
    main()

# A post-training script in the shape of TRL's example scripts (trl/scripts/dpo.py): `TrlParser` over the data
# arguments, the trainer's config and TRL's `ModelConfig`, so `--config FILE.yaml` (flat, with `env:`) and every
# field as a flag work as in TRL:
#   python examples/trl_style_script.py --data_dir runs/ml1m-data --model_name_or_path runs/ml1m-hstu \
#       --output_dir runs/ml1m-asft --baseline user_mean --learning_rate 1e-4 [--use_peft --lora_r 8]
#   python examples/trl_style_script.py --config asft.yaml --num_train_epochs 2
# `hf-genrec posttrain` does the same for every method, plus run folders, resume and metrics.json.
from trl import ModelConfig, TrlParser

from hf_genrec.scripts import GenRecScriptArguments
from hf_genrec.trainers import ASFTConfig, ASFTTrainer


def main(argv: list[str] | None = None) -> ASFTTrainer:
    parser = TrlParser((GenRecScriptArguments, ASFTConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config(args=argv)
    splits, vocabulary = script_args.load_splits()
    trainer = ASFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=vocabulary,
        reward_model=script_args.reward_model,
        peft_config=model_args,  # a LoRA adapter with --use_peft (trl.get_peft_config), else every weight
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)  # the recommender, its vocabulary and the model card
    return trainer


if __name__ == "__main__":
    main()

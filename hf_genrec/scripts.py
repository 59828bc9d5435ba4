"""The data arguments of a training script, as TRL's `ScriptArguments`, for `trl.TrlParser`.

TRL's example scripts parse `(ScriptArguments, XxxConfig, ModelConfig)`; an hf_genrec script does the same with
`GenRecScriptArguments` for the data and the reward model, one of our configs for the trainer, and TRL's own
`ModelConfig` for the base model (`model_name_or_path`) and the LoRA flags (`--use_peft --lora_r ...`):

```python
from trl import ModelConfig, TrlParser

from hf_genrec.scripts import GenRecScriptArguments
from hf_genrec.trainers import ASFTConfig, ASFTTrainer

script_args, training_args, model_args = TrlParser((GenRecScriptArguments, ASFTConfig, ModelConfig)
                                                   ).parse_args_and_config()
splits, vocabulary = script_args.load_splits()
trainer = ASFTTrainer(model=model_args.model_name_or_path, args=training_args, train_dataset=splits["train"],
                      eval_dataset=splits["validation"], processing_class=vocabulary,
                      reward_model=script_args.reward_model, peft_config=model_args)
```

`examples/trl_style_script.py` is that script, runnable with `--config` and flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import DatasetDict

from .data.prepared import dataset_name_path, load_prepared
from .data.vocabulary import ItemVocabulary


@dataclass
class GenRecScriptArguments:
    """
    Where a training script's data and reward model come from.

    Args:
        dataset_name (`str`, *optional*):
            A Hub dataset repo written by `hf-genrec prepare --push-to-hub` (`REPO` or `REPO@REVISION`), read with
            `datasets.load_dataset` (TRL's name for the same thing).
        data_dir (`str`, *optional*):
            Instead of `dataset_name`: a folder written by `hf-genrec prepare`.
        split (`str`, *optional*, defaults to `"leave-one-out"`):
            How the sequences are split into train / validation / test (`hf_genrec.data.splits.SPLITS`).
        reward_model (`str`, *optional*):
            A reward ensemble (folder or Hub repo written by `hf-genrec reward`), for the methods that query one.
    """

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset repo (REPO or REPO@REVISION) "
                                                             "written by `hf-genrec prepare --push-to-hub`."})
    data_dir: str | None = field(default=None, metadata={"help": "Instead of dataset_name: a `prepare` folder."})
    split: str = field(default="leave-one-out", metadata={"help": "How the sequences are split."})
    reward_model: str | None = field(default=None, metadata={"help": "Reward ensemble folder or Hub repo."})

    def __post_init__(self):
        if (self.dataset_name is None) == (self.data_dir is None):
            raise ValueError("GenRecScriptArguments: give exactly one of dataset_name (a Hub dataset repo) and "
                             f"data_dir (a `hf-genrec prepare` folder); got dataset_name={self.dataset_name!r}, "
                             f"data_dir={self.data_dir!r}.")

    @property
    def data_source(self) -> str:
        """What `load_prepared` reads: `data_dir`, or `dataset_name` as `hf://datasets/REPO[@REVISION]`."""
        return self.data_dir if self.data_dir is not None else dataset_name_path(self.dataset_name)

    def load_splits(self) -> tuple[DatasetDict, ItemVocabulary]:
        """(train / validation / test splits, item vocabulary) of the data."""
        return load_prepared(self.data_source, self.split)


__all__ = ["GenRecScriptArguments"]

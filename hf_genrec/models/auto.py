"""Auto classes for the heads transformers has no task for (next-item prediction, reward modelling).

`AutoConfig` and `AutoModel` are transformers' own; these two follow the same contract
(`register`, `from_config`, `from_pretrained`) for our task heads.
"""

from __future__ import annotations

import os

from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

# The `from_pretrained` keywords that locate the config, passed on to `AutoConfig`.
_HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download", "proxies")


class _HeadAutoClass:
    _task = "model"
    _registry: dict[type[PretrainedConfig], type[PreTrainedModel]]

    def __init__(self):
        raise OSError(f"{type(self).__name__} is built with `from_pretrained` or `from_config`.")

    @classmethod
    def register(cls, config_class: type[PretrainedConfig], model_class: type[PreTrainedModel]) -> None:
        """Map a config class to the model class that implements this task for it."""
        cls._registry[config_class] = model_class

    @classmethod
    def _model_class(cls, config: PretrainedConfig) -> type[PreTrainedModel]:
        model_class = cls._registry.get(type(config))
        if model_class is None:
            known = ", ".join(c.model_type for c in cls._registry) or "none"
            raise ValueError(
                f"No {cls._task} model is registered for model_type {config.model_type!r} (registered: {known}). "
                "Import hf_genrec before loading, or load the concrete class."
            )
        return model_class

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs) -> PreTrainedModel:
        return cls._model_class(config)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs) -> PreTrainedModel:
        """The registered model class of the checkpoint's config, loaded with its own `from_pretrained`.

        Keyword arguments named like config fields override the saved config, as with the concrete class: the
        config read here only picks the class, and the class reads (and checks) the config again itself.
        """
        config = kwargs.get("config")
        if not isinstance(config, PretrainedConfig):  # None, or where to read it from
            hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
            config = AutoConfig.from_pretrained(config or pretrained_model_name_or_path, **hub_kwargs)
        return cls._model_class(config).from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


class AutoModelForNextItemPrediction(_HeadAutoClass):
    """Loads the next-item recommender of a checkpoint: `AutoModelForNextItemPrediction.from_pretrained(path)`."""

    _task = "next-item prediction"
    _registry = {}


class AutoModelForRewardModeling(_HeadAutoClass):
    """Loads the reward model of a checkpoint: `AutoModelForRewardModeling.from_pretrained(path)`."""

    _task = "reward modelling"
    _registry = {}


__all__ = ["AutoModelForNextItemPrediction", "AutoModelForRewardModeling"]

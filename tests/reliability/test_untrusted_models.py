"""Untrusted model files: a `config.json` with absurd values, or one that disagrees with its safetensors weights,
is refused with a `ValueError` naming the field, its value and the allowed range, in well under a second and
before the model is built. Reward-ensemble manifests cannot point the loader outside the ensemble.

Every load of a hostile file runs under `bounded`: an address-space limit and an alarm turn a regression (a
160 GB table, two million layers) into a failed test instead of a machine that swaps or hangs.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_genrec import (
    AutoModelForNextItemPrediction,
    HSTUConfig,
    HSTUForNextItemPrediction,
    HSTUForRewardModeling,
)
from hf_genrec.models import HSTUModel
from hf_genrec.pipelines import Recommender
from hf_genrec.recipes import load_recipe
from hf_genrec.rewards import RewardEnsemble

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = dict(num_items=30, hidden_size=8, attention_dim=4, linear_dim=4, max_seq_len=10, max_position_embeddings=21,
            num_negatives=4)


def _virtual_memory_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def bounded(seconds: float = 2.0, extra_memory: int = 2 << 30):
    """Run the body with at most `extra_memory` more address space and an alarm at 5 x `seconds`, then assert
    it took under `seconds`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _virtual_memory_bytes() + extra_memory
    limited = hard == resource.RLIM_INFINITY or limit < hard
    if limited:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def _alarm(signum, frame):
        raise TimeoutError(f"still running after {5 * seconds:g} s: the input was not refused up front")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 5 * seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if limited:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.2f} s"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real tiny next-item checkpoint (config.json + model.safetensors)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "model"
    HSTUForNextItemPrediction(HSTUConfig(**TINY)).save_pretrained(path)
    return path


def tampered(checkpoint: Path, target: Path, **changes) -> Path:
    """A copy of `checkpoint` whose config.json has `changes` (written as JSON, as a downloaded file would be)."""
    shutil.copytree(checkpoint, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


# (config.json changes, field, allowed range as the message gives it)
ABSURD_CONFIGS = {
    "two million layers": ({"num_hidden_layers": 2_000_000}, "num_hidden_layers", "1..1,024"),
    "five billion items": ({"num_items": 5_000_000_000}, "num_items", "1..100,000,000"),
    "five billion items as a float": ({"num_items": 5e9}, "num_items", "1..100,000,000"),
    "negative width": ({"hidden_size": -8}, "hidden_size", "1..16,384"),
    "fractional width": ({"hidden_size": 8.5}, "hidden_size", "1..16,384"),
    "width as a string": ({"hidden_size": "8"}, "hidden_size", "1..16,384"),
    "heads as a bool": ({"num_attention_heads": True}, "num_attention_heads", "1..1,024"),
    "huge head width": ({"attention_dim": 10**7}, "attention_dim", "1..16,384"),
    "huge max_seq_len": ({"max_seq_len": 10**9, "max_position_embeddings": 10**9 + 11}, "max_seq_len", "1..65,536"),
    "huge position table": ({"max_position_embeddings": 2**40}, "max_position_embeddings", "1..65,536"),
    "huge time-bucket table": ({"num_time_buckets": 10**12}, "num_time_buckets", "1..65,536"),
    "huge negatives": ({"num_negatives": 10**9}, "num_negatives", "0..65,536"),
    "huge reward head": ({"reward_head_hidden_size": 10**10}, "reward_head_hidden_size", "1..65,536"),
    "product too large": ({"num_items": 100_000_000, "hidden_size": 4096}, "parameters", "17,179,869,184"),
    "dropout as a string": ({"input_dropout": "0.2"}, "input_dropout", "[0, 1)"),
    "NaN temperature": ({"similarity_temperature": math.nan}, "similarity_temperature", "(0, inf)"),
    "zero epsilon": ({"layer_norm_eps": 0}, "layer_norm_eps", "(0, inf)"),
    "initializer as a string": ({"initializer_range": "x"}, "initializer_range", "(0, inf)"),
    "flag as a string": ({"use_time_bias": "yes"}, "use_time_bias", "true or false"),
    "infinite reward scale": ({"reward_max": math.inf}, "reward_max", "finite"),
}


@pytest.mark.parametrize("case", sorted(ABSURD_CONFIGS))
def test_absurd_config_is_refused_fast_naming_field_value_and_range(case, checkpoint, tmp_path):
    changes, field, allowed = ABSURD_CONFIGS[case]
    path = tampered(checkpoint, tmp_path / "hostile", **changes)
    for load in (AutoModelForNextItemPrediction.from_pretrained, HSTUForNextItemPrediction.from_pretrained,
                 HSTUForRewardModeling.from_pretrained, Recommender.from_pretrained):
        with bounded(), pytest.raises(ValueError) as error:
            load(path)
        message = str(error.value)
        assert field in message and allowed in message, (load, message)
        if field != "parameters":
            assert repr(changes[field]) in message, message


def test_config_changed_after_it_was_built_is_checked_when_the_model_is_built():
    config = HSTUConfig(**TINY)
    config.num_hidden_layers = 2_000_000  # attribute writes bypass the constructor's validation
    with bounded(), pytest.raises(ValueError, match=r"num_hidden_layers .*1\.\.1,024, got 2000000"):
        HSTUForNextItemPrediction(config)


def test_keyword_overrides_are_checked_too(checkpoint):
    with bounded(), pytest.raises(ValueError, match=r"num_items .*got 5000000000"):
        HSTUForNextItemPrediction.from_pretrained(checkpoint, num_items=5_000_000_000)


# (config.json changes that stay individually valid, fragments the message must hold)
MISMATCHED_CONFIGS = {
    "more layers than the weights": ({"num_hidden_layers": 3}, ["num_hidden_layers=3", "2 layers"]),
    "fewer layers than the weights": ({"num_hidden_layers": 1}, ["num_hidden_layers=1", "2 layers"]),
    "another catalogue": ({"num_items": 31}, ["num_items=31", "(31, 8)", "num_items=30"]),
    "another width": ({"hidden_size": 12}, ["hidden_size=12", "(31, 8)", "hidden_size=8"]),
    "more heads": ({"num_attention_heads": 2}, ["layers.0.uvqk.weight", "(16, 8)", "(32, 8)"]),
    "longer position table": ({"max_position_embeddings": 30}, ["position_embeddings.weight", "(21, 8)", "(30, 8)"]),
    "more time buckets": ({"num_time_buckets": 64}, ["time_weights", "(129,)", "(65,)"]),
}


@pytest.mark.parametrize("case", sorted(MISMATCHED_CONFIGS))
def test_config_that_disagrees_with_the_safetensors_header_is_refused(case, checkpoint, tmp_path):
    """Before the fix, more layers loaded with layer 2 randomly initialised and fewer silently dropped one;
    the other cases failed after the model was built, with transformers' RuntimeError."""
    changes, fragments = MISMATCHED_CONFIGS[case]
    path = tampered(checkpoint, tmp_path / "mismatch", **changes)
    for load in (AutoModelForNextItemPrediction.from_pretrained, HSTUForRewardModeling.from_pretrained):
        with bounded(), pytest.raises(ValueError) as error:
            load(path)
        message = str(error.value)
        assert str(path) in message and "config.json saved with these weights" in message, message
        for fragment in fragments:
            assert fragment in message, (fragment, message)


def test_config_naming_its_own_weights_file_is_checked_against_that_file(checkpoint, tmp_path):
    """A config may name its weights file (`transformers_weights`); that file is the one compared."""
    path = tampered(checkpoint, tmp_path / "renamed", num_hidden_layers=3, transformers_weights="other.safetensors")
    (path / "model.safetensors").rename(path / "other.safetensors")
    with bounded(), pytest.raises(ValueError, match="num_hidden_layers=3 but the weights hold 2 layers"):
        AutoModelForNextItemPrediction.from_pretrained(path)


def test_sharded_checkpoint_is_checked_across_its_shards(checkpoint, tmp_path):
    model = HSTUForNextItemPrediction.from_pretrained(checkpoint)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="1KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    loaded = HSTUForNextItemPrediction.from_pretrained(tmp_path / "sharded")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    path = tampered(tmp_path / "sharded", tmp_path / "sharded-mismatch", num_items=29)
    with bounded(), pytest.raises(ValueError, match="num_items=29"):
        HSTUForNextItemPrediction.from_pretrained(path)


@pytest.mark.parametrize("damage", ["truncated", "header length too large", "header not JSON"])
def test_broken_safetensors_header_is_refused_naming_the_file(damage, checkpoint, tmp_path):
    path = tmp_path / "broken"
    shutil.copytree(checkpoint, path)
    data = (path / "model.safetensors").read_bytes()
    data = {
        "truncated": data[: len(data) // 2],
        "header length too large": (10**15).to_bytes(8, "little") + data[8:],
        "header not JSON": data[:8] + b"{not json" + data[17:],
    }[damage]
    (path / "model.safetensors").write_bytes(data)
    with bounded(), pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        AutoModelForNextItemPrediction.from_pretrained(path)


def test_matching_checkpoints_still_load_across_heads(checkpoint, tmp_path):
    """The checks accept every legitimate load: the same head, new heads, a bare backbone, config overrides."""
    saved = load_file(checkpoint / "model.safetensors")
    model = AutoModelForNextItemPrediction.from_pretrained(checkpoint)
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in saved.items())
    reward = HSTUForRewardModeling.from_pretrained(checkpoint)  # backbone loaded, heads new
    assert torch.equal(reward.model.item_embeddings.weight, saved["model.item_embeddings.weight"])
    reward.save_pretrained(tmp_path / "reward")
    back = HSTUForNextItemPrediction.from_pretrained(tmp_path / "reward")  # reward heads ignored
    assert torch.equal(back.model.layers[1].uvqk.weight, saved["model.layers.1.uvqk.weight"])
    HSTUModel.from_pretrained(checkpoint).save_pretrained(tmp_path / "backbone")  # saved without the "model." prefix
    bare = HSTUForNextItemPrediction.from_pretrained(tmp_path / "backbone")
    assert torch.equal(bare.model.position_embeddings.weight, saved["model.position_embeddings.weight"])
    # Config fields given as keywords override the saved ones, through the auto class too (was a TypeError).
    overridden = AutoModelForNextItemPrediction.from_pretrained(checkpoint, input_dropout=0.1)
    assert overridden.config.input_dropout == 0.1
    assert torch.equal(overridden.model.item_embeddings.weight, saved["model.item_embeddings.weight"])
    # Asking for re-initialised mismatched tensors (a new catalogue size) is still possible.
    resized = HSTUForNextItemPrediction.from_pretrained(checkpoint, num_items=31, ignore_mismatched_sizes=True)
    assert resized.model.item_embeddings.weight.shape == (32, 8)
    assert torch.equal(resized.model.layers[0].uvqk.weight, saved["model.layers.0.uvqk.weight"])


@pytest.mark.parametrize("field", ["num_items", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "attention_dim", "linear_dim", "max_seq_len", "max_position_embeddings",
                                   "num_time_buckets", "num_negatives", "reward_head_hidden_size"])
def test_each_size_bound_accepts_its_limit_and_refuses_one_more(field):
    from hf_genrec.models.hstu.configuration_hstu import SIZE_LIMITS

    limit = SIZE_LIMITS[field]
    small = dict(num_items=10, hidden_size=8, attention_dim=4, linear_dim=4, max_seq_len=10, max_position_embeddings=11)
    if field == "max_seq_len":
        small["max_position_embeddings"] = limit
    assert getattr(HSTUConfig(**{**small, field: limit}), field) == limit
    with pytest.raises(ValueError, match=rf"HSTUConfig\.{field} must be an integer in [01]\.\.{limit:,}, got {limit + 1}"):
        HSTUConfig(**{**small, field: limit + 1})


def test_hidden_size_needs_no_divisibility_by_the_heads(tmp_path):
    """HSTU's per-head widths are their own fields (attention_dim, linear_dim): hidden_size=15 with 2 heads is
    valid, builds, scores, and round-trips through the header check."""
    torch.manual_seed(0)
    config = HSTUConfig(**{**TINY, "hidden_size": 15, "num_attention_heads": 2, "attention_dim": 3, "linear_dim": 5})
    model = HSTUForNextItemPrediction(config).eval()
    model.save_pretrained(tmp_path / "odd")
    loaded = AutoModelForNextItemPrediction.from_pretrained(tmp_path / "odd").eval()
    items = torch.tensor([[1, 2, 3, 0]])
    assert torch.equal(loaded.recommend(items, k=5).item_ids, model.recommend(items, k=5).item_ids)


RECIPES = sorted(path.name for path in (REPO_ROOT / "recipes" / "movielens-1m").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_shipped_recipe_builds_a_valid_config(recipe):
    model_fields = load_recipe(REPO_ROOT / "recipes" / "movielens-1m" / recipe)["model"]
    config = HSTUConfig(num_items=3883, **model_fields)  # MovieLens-1M's catalogue
    assert config.approximate_num_parameters() >= config.vocab_size * config.hidden_size


# ------------------------------------------------------------------------------------------- reward ensembles
@pytest.fixture
def ensemble_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    members = [HSTUForRewardModeling(HSTUConfig(**TINY)) for _ in range(2)]
    return Path(RewardEnsemble(members, seeds=[0, 1]).save_pretrained(tmp_path / "ensemble"))


def _edit_manifest(directory: Path, **changes) -> None:
    manifest = json.loads((directory / "ensemble.json").read_text())
    manifest.update(changes)
    (directory / "ensemble.json").write_text(json.dumps(manifest))


def test_ensemble_manifest_cannot_point_outside_the_ensemble(ensemble_dir, tmp_path):
    """Before the fix, a member path like ../elsewhere was followed and loaded."""
    shutil.copytree(ensemble_dir / "member-1", tmp_path / "elsewhere")
    for members in (["member-0", "../elsewhere"], [str(tmp_path / "elsewhere")], ["member-1", "member-0"], []):
        _edit_manifest(ensemble_dir, members=members, num_members=len(members))
        with bounded(), pytest.raises(ValueError, match="'members' must list member-0 ... member-{K-1}"):
            RewardEnsemble.from_pretrained(ensemble_dir)


@pytest.mark.parametrize(
    "manifest, fragment",
    [
        ("[1, 2]", "must hold a JSON object, got list"),
        ("{not json", "is not valid JSON"),
        ('{"format_version": 1, "members": ["member-0", "member-1"], "num_members": 3}', "num_members is 3"),
        ('{"format_version": 1, "members": ["member-0", "member-1"], "seeds": "0,1"}', "'seeds' must be a list"),
        ('{"format_version": 1, "members": ["member-0", "member-1"], "trained_on": "ml"}', "'trained_on' must be"),
        ('{"format_version": 1, "members": ["member-0", "member-1"], "num_items": 99}', "num_items is 99"),
    ],
)
def test_malformed_ensemble_manifest_is_refused_clearly(manifest, fragment, ensemble_dir):
    (ensemble_dir / "ensemble.json").write_text(manifest)
    with bounded(), pytest.raises(ValueError, match=fragment):
        RewardEnsemble.from_pretrained(ensemble_dir)


def test_ensemble_member_configs_are_checked_before_any_weights(ensemble_dir):
    tampered_member = ensemble_dir / "member-1" / "config.json"
    config = json.loads(tampered_member.read_text())
    tampered_member.write_text(json.dumps({**config, "num_hidden_layers": 2_000_000}))
    with bounded(), pytest.raises(ValueError, match=r"num_hidden_layers must be an integer in 1\.\.1,024"):
        RewardEnsemble.from_pretrained(ensemble_dir)
    tampered_member.write_text(json.dumps({**config, "num_items": 31}))  # valid alone, disagrees with member 0
    with bounded(), pytest.raises(ValueError, match="members 0 and 1 disagree on config.num_items: 30 vs 31"):
        RewardEnsemble.from_pretrained(ensemble_dir)
    tampered_member.write_text(json.dumps({**config, "reward_head_hidden_size": 32}))  # disagrees with its weights
    with bounded(), pytest.raises(ValueError, match=r"reward_head\.dense\.weight is \(64, 24\)"):
        RewardEnsemble.from_pretrained(ensemble_dir)


# ------------------------------------------------------------------------------------------------------ the Hub
def test_hostile_model_pulled_from_the_hub_is_refused_fast(fake_hub, checkpoint, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi()
    for repo, changes in (("tester/absurd", {"num_hidden_layers": 2_000_000}), ("tester/mismatch", {"num_items": 31})):
        api.create_repo(repo)
        api.upload_folder(folder_path=str(tampered(checkpoint, tmp_path / repo, **changes)), repo_id=repo)
    with bounded(), pytest.raises(ValueError, match="num_hidden_layers must be an integer in 1..1,024, got 2000000"):
        AutoModelForNextItemPrediction.from_pretrained("tester/absurd")
    with bounded(), pytest.raises(ValueError, match="num_items=31 .* weights' item table is \\(31, 8\\)"):
        Recommender.from_pretrained("tester/mismatch")

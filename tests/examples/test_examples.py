"""Every script in `examples/` runs, as a user would run it, on tiny generated data."""

import ast
import contextlib
import io
import runpy
import sys
from pathlib import Path

import pytest
import torch

from hf_genrec import AutoModelForNextItemPrediction
from hf_genrec.data import ItemVocabulary
from hf_genrec.hub import push_run_to_hub

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str) -> str:
    """Execute examples/<name> as `__main__` with `args` on the command line; return what it printed."""
    argv, out = sys.argv, io.StringIO()
    sys.argv = [str(EXAMPLES / name), *args]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.argv = argv
    return out.getvalue()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    output = tmp_path_factory.mktemp("examples") / "pretrain"
    printed = run_example("pretrain.py", "--output", str(output), "--users", "40", "--items", "30",
                          "--epochs", "1", "--batch-size", "16")
    return output, printed


def test_pretrain(pretrained):
    output, printed = pretrained
    assert "test NDCG@10" in printed and str(output) in printed
    model = AutoModelForNextItemPrediction.from_pretrained(output)
    assert model.config.num_items == ItemVocabulary.from_pretrained(output).num_items == 30
    assert (output / "README.md").is_file()


def test_recommend(pretrained):
    output, _ = pretrained
    history = [1, 2, 3]
    printed = run_example("recommend.py", "--model", str(output), "--history", "1,2,3", "--k", "5")
    assert printed.startswith("Top 5 for a history of 3 items: [")
    items = ast.literal_eval(printed.split(": ", 1)[1].strip())  # the printed Python list
    assert len(items) == 5 and not set(items) & set(history)
    assert all(item in ItemVocabulary.from_pretrained(output) for item in items)


def test_load_from_hub(pretrained, fake_hub):
    output, _ = pretrained
    push_run_to_hub(output, "tester/example-model")
    printed = run_example("load_from_hub.py", "--repo-id", "tester/example-model", "--history", "4,5", "--k", "3")
    assert "tester/example-model: 30 items" in printed and "no recipe.yaml" in printed
    local = run_example("recommend.py", "--model", str(output), "--history", "4,5", "--k", "3")
    assert printed.strip().endswith(local.split(": ", 1)[1].strip())  # same top 3 from the Hub copy


def test_posttrain_asft(pretrained, tmp_path):
    pytest.importorskip("hf_genrec.trainers.asft")
    model_dir, _ = pretrained
    output = tmp_path / "asft"
    printed = run_example("posttrain_asft.py", "--model", str(model_dir), "--output", str(output), "--users", "40",
                          "--items", "30", "--max-steps", "2", "--batch-size", "8", "--learning-rate", "1e-2")
    assert "A-SFT test NDCG@10" in printed
    tuned = AutoModelForNextItemPrediction.from_pretrained(output).state_dict()
    start = AutoModelForNextItemPrediction.from_pretrained(model_dir).state_dict()
    assert any(not torch.equal(tuned[name], start[name]) for name in start)  # it trained
    assert ItemVocabulary.from_pretrained(output) == ItemVocabulary.from_pretrained(model_dir)


def test_lora_posttrain(pretrained, tmp_path):
    pytest.importorskip("hf_genrec.trainers.asft")
    model_dir, _ = pretrained
    output = tmp_path / "lora"
    printed = run_example("lora_posttrain.py", "--lora-r", "2", "--model", str(model_dir), "--output", str(output),
                          "--users", "40", "--items", "30", "--max-steps", "2", "--batch-size", "8",
                          "--learning-rate", "1e-2")
    assert "A-SFT test NDCG@10" in printed
    assert (output / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForNextItemPrediction.from_pretrained(output).state_dict()
    start = AutoModelForNextItemPrediction.from_pretrained(model_dir).state_dict()
    assert torch.equal(merged["model.item_embeddings.weight"], start["model.item_embeddings.weight"])  # frozen
    assert not torch.equal(merged["model.layers.0.uvqk.weight"], start["model.layers.0.uvqk.weight"])  # adapted


def test_trl_style_script_with_flat_config_flags_and_lora(tmp_path, monkeypatch):
    from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
    from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
    from hf_genrec.data.prepared import prepare_dataset

    monkeypatch.delenv("HF_GENREC_EXAMPLE_VARIABLE", raising=False)
    ratings = write_movielens_file(generate_synthetic_interactions(num_users=40, num_items=30, seed=2),
                                   tmp_path / "ratings.dat")
    prepare_dataset(ratings, tmp_path / "data")
    vocabulary = ItemVocabulary.from_pretrained(tmp_path / "data")
    torch.manual_seed(0)
    HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, hidden_size=16, num_hidden_layers=1,
                                         attention_dim=8, linear_dim=8, max_seq_len=12, max_position_embeddings=15,
                                         num_negatives=8)).save_pretrained(tmp_path / "model")
    vocabulary.save_pretrained(tmp_path / "model")
    config = tmp_path / "asft.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nmodel_name_or_path: {tmp_path / 'model'}\n"
                      f"output_dir: {tmp_path / 'asft'}\nbaseline: user_mean\nlearning_rate: 1e-4\nmax_steps: 2\n"
                      "per_device_train_batch_size: 8\ndisable_tqdm: true\n"
                      "env:\n  HF_GENREC_EXAMPLE_VARIABLE: 'on'\n")
    namespace = runpy.run_path(str(EXAMPLES / "trl_style_script.py"))
    trainer = namespace["main"](["--config", str(config), "--temperature", "0.5", "--use_peft", "--lora_r", "2"])
    assert trainer.args.learning_rate == 1e-4 and trainer.args.temperature == 0.5
    assert trainer.state.global_step == 2
    assert (tmp_path / "asft" / "adapter" / "adapter_config.json").is_file()
    assert AutoModelForNextItemPrediction.from_pretrained(tmp_path / "asft").config.num_items == vocabulary.num_items
    import os

    assert os.environ["HF_GENREC_EXAMPLE_VARIABLE"] == "on"

import json
import subprocess
import sys

import pytest

from hf_genrec.cli import main
from hf_genrec.commands.quickstart import quickstart
from hf_genrec.data import generate_synthetic_interactions, write_movielens_file


def test_quickstart_end_to_end_beats_most_popular(tmp_path):
    summary = quickstart(tmp_path / "qs", num_users=250, num_items=100, epochs=4)
    assert (tmp_path / "qs" / "hstu" / "model.safetensors").exists()
    assert (tmp_path / "qs" / "hstu" / "item_vocabulary.json").exists()
    saved = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert saved["hstu"]["ndcg@10"] == summary["hstu"]["ndcg@10"]
    assert summary["hstu"]["ndcg@10"] > summary["most_popular"]["ndcg@10"]
    assert "| HSTU (pretrained) |" in summary["table"]


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "ratings.dat"
    write_movielens_file(generate_synthetic_interactions(num_users=120, num_items=60, mean_events=30, seed=1), path)
    return path


def test_prepare_pretrain_evaluate_commands(tmp_path, ratings_file, capsys):
    data = tmp_path / "data"
    assert main(["prepare", "--input", str(ratings_file), "--format", "movielens", "--output", str(data)]) == 0
    manifest = json.loads((data / "prepare.json").read_text())
    assert manifest["num_users"] == 120 and manifest["rating_min"] >= 1
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("model:\n  hidden_size: 16\n  attention_dim: 8\n  linear_dim: 8\n  max_seq_len: 20\n"
                      "  max_position_embeddings: 31\n  num_negatives: 16\ntraining:\n  per_device_train_batch_size: 32\n"
                      "  disable_tqdm: true\n")
    model_dir = tmp_path / "model"
    assert main(["pretrain", "--data", str(data), "--output", str(model_dir), "--recipe", str(recipe),
                 "--epochs", "2", "--seed", "3"]) == 0
    report = json.loads((model_dir / "metrics.json").read_text())
    assert set(report) >= {"validation", "test", "best_epoch", "seconds_per_epoch", "peak_memory_mb"}
    assert "high_reward_target/ndcg@10" in report["test"] and report["seed"] == 3
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["ndcg@10"] == pytest.approx(report["test"]["ndcg@10"])
    assert "mrr" in metrics and "hr@200" in metrics

    # A second run into the same directory is refused with a clear message, not silently mixed.
    capsys.readouterr()
    assert main(["pretrain", "--data", str(data), "--output", str(model_dir), "--recipe", str(recipe)]) == 2
    assert "already holds" in capsys.readouterr().err


def test_recipe_typo_is_a_clear_error(tmp_path, ratings_file, capsys):
    data = tmp_path / "data"
    main(["prepare", "--input", str(ratings_file), "--output", str(data)])
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("training:\n  learning_rat: 0.01\n")
    assert main(["pretrain", "--data", str(data), "--output", str(tmp_path / "m"), "--recipe", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "learning_rat" in err and "learning_rate" in err


def test_missing_input_and_not_prepared_dir(tmp_path, capsys):
    assert main(["prepare", "--input", str(tmp_path / "nope.dat"), "--output", str(tmp_path / "d")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path), "--output", str(tmp_path / "m")]) == 2
    assert "hf-genrec prepare" in capsys.readouterr().err


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "hf_genrec.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("prepare", "pretrain", "evaluate", "quickstart"):
        assert command in out.stdout

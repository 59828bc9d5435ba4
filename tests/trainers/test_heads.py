"""The extra heads (CQL's Q scalars, PPO's value head) get their initial biases from the training data when
the trainer is built, before any step, and old head files (with a `bias_initialized` flag) still load."""

import torch
import torch.nn.functional as F
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model

from hf_genrec.data import SequenceCollator
from hf_genrec.trainers.cql import CQL_HEAD, CQLHead
from hf_genrec.trainers.ppo import VALUE_HEAD, ValueHead


def test_cql_bias_starts_at_the_mean_reward_residual_of_the_training_data(tmp_path, train_rows):
    model = tiny_model(seed=2)
    mode = model.training
    trainer = posttrain_trainer("cql", tmp_path, train_rows, model=model)
    assert model.training == mode  # the estimate runs in eval mode and restores the mode
    head = trainer.head(CQL_HEAD)
    # By hand, over every training row (fewer than HEAD_INIT_ROWS): b = mean(r − s·cos(u_x, e_y)).
    batch = SequenceCollator(max_seq_len=12)([train_rows[i] for i in range(len(train_rows))])
    supervised = batch["labels"] > 0
    with torch.no_grad():
        model.eval()
        user = model(batch["item_ids"], batch["attention_mask"], batch["timestamps"],
                     batch["query_timestamps"]).user_embeddings[supervised]
        items = F.normalize(model.model.item_embeddings.weight, dim=-1)[batch["labels"][supervised]]
        residuals = batch["label_ratings"][supervised] - head.scale * (user * items).sum(-1)
    torch.testing.assert_close(head.bias.detach(), residuals.mean(), rtol=1e-5, atol=1e-5)
    assert abs(residuals.mean().item()) > 0.1  # not the placeholder 0


def test_ppo_value_bias_starts_at_the_ensemble_value_estimate(tmp_path, train_rows):
    reward_model = FakeRewardEnsemble()
    trainer = posttrain_trainer("ppo", tmp_path, train_rows, reward_model=reward_model)
    # The fake ensemble's value estimate is 3 at every position; no candidate was scored to get it.
    assert trainer.head(VALUE_HEAD).out.bias.item() == 3.0
    assert reward_model.calls == 0


def test_heads_saved_with_the_old_initialisation_flag_load():
    cql = CQLHead(scale=20.0)
    cql.load_state_dict({"log_scale": torch.tensor(3.0), "bias": torch.tensor(1.5), "bias_initialized": torch.tensor(True)})
    assert cql.bias.item() == 1.5 and cql.log_scale.item() == 3.0
    value = ValueHead(hidden_size=4)
    state = {name: torch.full_like(tensor, 0.5) for name, tensor in value.state_dict().items()}
    value.load_state_dict({**state, "bias_initialized": torch.tensor(True)})
    assert value.out.bias.item() == 0.5

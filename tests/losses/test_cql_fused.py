"""The fused CQL loss (`cql_loss` with an affine Q = s·scores + b) against the formula written out in float64."""

import pytest
import torch

import hf_genrec.losses.cql as cql_module
from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import SequenceCollator, build_sequences, generate_synthetic_interactions, split_sequences
from hf_genrec.losses.cql import cql_loss, scaled_logsumexp
from hf_genrec.trainers import CQLConfig, CQLTrainer
from hf_genrec.trainers.cql import CQL_HEAD
from hf_genrec.trainers.policy import supervised_mask

ALPHA = 3.0


def random_problem(rows: int = 40, columns: int = 25, seed: int = 0):
    """Cosine-like float32 scores with −inf at column 0 (padding) and at a few other entries, logged actions
    among the finite entries, ratings 1..5, and a learnable (log_scale, bias)."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(rows, columns, generator=generator) * 2 - 1
    scores[:, 0] = float("-inf")
    scores[torch.rand(rows, columns, generator=generator) < 0.1] = float("-inf")
    actions = torch.multinomial(scores.isfinite().float(), 1, generator=generator).squeeze(1)
    rewards = torch.randint(1, 6, (rows,), generator=generator).float()
    log_scale = torch.tensor(2.5, requires_grad=True)  # s ≈ 12: the pretrained policy's 1/τ scale
    bias = torch.tensor(0.7, requires_grad=True)
    return scores.requires_grad_(), actions, rewards, log_scale, bias


def reference_cql(scores, actions, rewards, log_scale, bias, alpha):
    """The CQL formula with plain tensor ops in float64: Q = s·c + b on the actions, −inf elsewhere."""
    non_actions = scores.isinf()
    q_values = (log_scale.exp() * scores.masked_fill(non_actions, 0.0) + bias).masked_fill(non_actions, float("-inf"))
    q_logged = q_values.gather(1, actions[:, None]).squeeze(1)
    regression = (q_logged - rewards) ** 2
    penalty = torch.logsumexp(q_values, dim=1) - q_logged
    return regression + alpha * penalty, regression, penalty


def outputs_and_gradients(loss_fn, leaves, actions, rewards, weights):
    """The three per-position outputs and the gradients of Σ w₁·losses + w₂·regression + w₃·penalty."""
    outputs = loss_fn(*leaves)
    objective = sum((w * out).sum() for w, out in zip(weights, outputs))
    gradients = torch.autograd.grad(objective, leaves)
    return [out.detach() for out in outputs], gradients


@pytest.mark.parametrize("block_elements", [None, 100])  # one block, and blocks of 4 rows
def test_cql_loss_and_gradients_match_a_float64_reference(monkeypatch, block_elements):
    if block_elements is not None:
        monkeypatch.setattr(cql_module, "_BLOCK_ELEMENTS", block_elements)
    scores, actions, rewards, log_scale, bias = random_problem()
    weights = [torch.rand(scores.shape[0], generator=torch.Generator().manual_seed(seed)) for seed in (1, 2, 3)]

    def fused(s, ls, b):
        return cql_loss(s, actions, rewards, ALPHA, scale=ls.exp(), bias=b)

    def reference(s, ls, b):
        return reference_cql(s, actions, rewards.double(), ls, b, ALPHA)

    values, gradients = outputs_and_gradients(fused, [scores, log_scale, bias], actions, rewards, weights)
    leaves64 = [scores.detach().double().requires_grad_(), log_scale.detach().double().requires_grad_(),
                bias.detach().double().requires_grad_()]
    expected_values, expected_gradients = outputs_and_gradients(
        reference, leaves64, actions, rewards, [w.double() for w in weights]
    )
    for value, expected in zip(values, expected_values):
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)
    expected_gradients = [expected_gradients[0].masked_fill(scores.isinf(), 0.0), *expected_gradients[1:]]
    for gradient, expected in zip(gradients, expected_gradients):
        assert gradient.dtype == torch.float32 and gradient.isfinite().all()
        torch.testing.assert_close(gradient.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert gradients[0][:, 0].eq(0).all()  # the padding column gets no gradient


@pytest.mark.parametrize("block_elements", [None, 60])
def test_scaled_logsumexp_matches_torch_logsumexp_and_the_softmax_mean(monkeypatch, block_elements):
    if block_elements is not None:
        monkeypatch.setattr(cql_module, "_BLOCK_ELEMENTS", block_elements)
    scores = random_problem(rows=30)[0].detach()
    scores[7] = float("-inf")  # a row without actions
    lse, mean = scaled_logsumexp(scores, 12.0, with_mean=True)

    expected = torch.logsumexp(12.0 * scores.double(), dim=1)
    torch.testing.assert_close(lse.double(), expected, rtol=1e-6, atol=1e-6)
    assert lse[7] == float("-inf")
    probabilities = torch.softmax(12.0 * scores.double(), dim=1)
    finite = torch.arange(30) != 7
    expected_mean = (probabilities * scores.double().masked_fill(scores.isinf(), 0.0)).sum(dim=1)
    torch.testing.assert_close(mean[finite].double(), expected_mean[finite], rtol=1e-5, atol=1e-6)
    assert scaled_logsumexp(scores, 12.0)[1] is None


def test_cql_loss_rejects_a_non_positive_scale():
    scores, actions, rewards, _, _ = random_problem()
    with pytest.raises(ValueError, match="scale must be > 0"):
        cql_loss(scores, actions, rewards, ALPHA, scale=-1.0)


# ----------------------------------------------------------------------------- the trainer's step
@pytest.fixture(scope="module")
def cql_trainer(tmp_path_factory):
    interactions = generate_synthetic_interactions(num_users=8, num_items=20, mean_events=20, seed=3)
    sequences, _ = build_sequences(interactions)
    rows = split_sequences(sequences, "leave-one-out")["train"]
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(
        num_items=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, attention_dim=8, linear_dim=8,
        max_seq_len=12, max_position_embeddings=15, input_dropout=0.0, linear_dropout=0.0,
    ))
    args = CQLConfig(str(tmp_path_factory.mktemp("cql")), alpha=ALPHA, per_device_train_batch_size=8,
                     disable_tqdm=True, report_to=[])
    trainer = CQLTrainer(model=model, args=args, train_dataset=rows)
    batch = SequenceCollator(max_seq_len=12)([rows[i] for i in range(len(rows))])
    return trainer, batch


def test_cql_step_saves_one_catalogue_sized_tensor_for_the_backward(cql_trainer):
    """The (P, V + 1) scores are the only catalogue-sized tensor autograd keeps (the unfused formula kept the
    cosines, the Q-values and the logsumexp's input: one extra full pass over them per saved tensor)."""
    trainer, batch = cql_trainer
    supervised = supervised_mask(batch["labels"])
    catalogue_sized = (int(supervised.sum()), trainer.policy.config.num_items + 1)
    saved = set()

    def pack(tensor):
        if tuple(tensor.shape) == catalogue_sized:
            saved.add(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_sum, _ = trainer._loss_sum(trainer.policy, batch, "train")
    assert loss_sum.requires_grad
    assert len(saved) == 1


def test_cql_step_loss_and_head_gradients_match_the_formula(cql_trainer):
    """The trainer's loss and the gradients of s and b equal the formula on the step's own cosines (float64)."""
    trainer, batch = cql_trainer
    head = trainer.head(CQL_HEAD)
    with torch.no_grad():
        # Off the initial b = mean(r − s·cos), where the b gradient Σ 2 (Q(x, y) − r) cancels to ~0.
        head.bias.add_(0.5)
    supervised = supervised_mask(batch["labels"])
    loss_sum, _ = trainer._loss_sum(trainer.policy, batch, "train")
    gradients = torch.autograd.grad(loss_sum, [head.log_scale, head.bias])

    with torch.no_grad():
        _, cosines = trainer._forward_cosines(trainer.policy, batch, supervised)
    leaves = [head.log_scale.detach().double().requires_grad_(), head.bias.detach().double().requires_grad_()]
    labels, ratings = batch["labels"][supervised], batch["label_ratings"][supervised].double()
    expected, _, _ = reference_cql(cosines.double(), labels, ratings, *leaves, ALPHA)
    expected_gradients = torch.autograd.grad(expected.sum(), leaves)
    torch.testing.assert_close(loss_sum.double(), expected.sum(), rtol=1e-5, atol=1e-5)
    for gradient, reference in zip(gradients, expected_gradients):
        torch.testing.assert_close(gradient.double(), reference, rtol=1e-5, atol=1e-5)

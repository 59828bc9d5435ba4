"""`recommend` on 10,000 MovieLens-1M-sized histories: bounded memory, same answers as one at a time."""

import resource

import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction


def test_recommend_for_10000_histories_matches_one_at_a_time():
    torch.manual_seed(0)
    # The MovieLens-1M catalogue (3,883 items) and history window (200); a narrow model keeps the test quick.
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=3883, hidden_size=16, attention_dim=16, linear_dim=16)).eval()
    generator = torch.Generator().manual_seed(1)
    num_histories, max_len = 10_000, 200
    lengths = torch.randint(1, max_len + 1, (num_histories,), generator=generator)
    mask = (torch.arange(max_len)[None] < lengths[:, None]).long()
    item_ids = torch.randint(1, 3884, (num_histories, max_len), generator=generator) * mask
    timestamps = (torch.cumsum(torch.randint(1, 10**5, (num_histories, max_len), generator=generator), 1) + 9 * 10**8) * mask

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batched = model.recommend(item_ids, mask, timestamps, k=10, chunk_size=512)
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert batched.item_ids.shape == (num_histories, 10)
    # One chunk's working set (512 x 200 x 200 attention tensors, 512 x 3,884 scores), not the whole batch's.
    assert growth_mb < 1500, f"peak memory grew by {growth_mb:.0f} MB"

    rows = torch.randperm(num_histories, generator=generator)[:60]
    for row in rows.tolist():
        n = int(lengths[row])
        single = model.recommend(item_ids[row : row + 1, :n], mask[row : row + 1, :n], timestamps[row : row + 1, :n], k=10)
        assert torch.equal(single.item_ids[0], batched.item_ids[row]), row
        torch.testing.assert_close(single.scores[0], batched.scores[row], rtol=1e-4, atol=1e-4)

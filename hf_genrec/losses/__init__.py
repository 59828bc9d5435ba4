"""Loss functions, one module per method."""

from .next_item import full_softmax_loss, sampled_softmax_loss

__all__ = ["full_softmax_loss", "sampled_softmax_loss"]

"""Training FLOPs per token counted by hand from a model's shape, as an independent reference.

Written out term by term from Hoffmann et al. 2022, Appendix F, without calling
``scaling.accounting``, so a test can compare the planner's and the trainer's budgets with a
count that does not come from the code under test. Per token, forward pass, each layer:

- attention projections: 2 x d_model x 3 (heads x d_head)
- attention logits: 2 x T x (heads x d_head), the full T x T matrix
- attention-weighted values: 2 x T x (heads x d_head)
- output projection: 2 x (heads x d_head) x d_model
- feed-forward: 2 x 2 x d_model x d_ff (GELU: up and down), 2 x 3 x d_model x d_ff (SwiGLU: gate, up, down)

and once, the output layer: 2 x d_model x V. The backward pass costs twice the forward (one matmul
for the input gradient, one for the weight gradient). The embedding lookup and the softmax are not
charged (the README's Accounting section says why).
"""

from __future__ import annotations


def training_flops_per_token(model) -> int:
    """Forward + backward matmul FLOPs per token of ``model`` (a ``scaling.config.ModelConfig``
    with its vocabulary set)."""
    d, T, V = model.d_model, model.seq_len, model.vocab_size
    width = model.n_head * model.head_dim  # heads x d_head, the attention's inner width
    matrices = 3 if model.mlp == "swiglu" else 2
    per_layer = 2 * d * 3 * width + 2 * T * width + 2 * T * width + 2 * width * d + 2 * matrices * d * model.ff_dim
    forward = model.n_layer * per_layer + 2 * d * V
    return 3 * forward

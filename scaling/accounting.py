"""Parameter and FLOP counts from the config alone, so a sweep can be planned without building a model.

N is reported three ways (GUIDE section 3): total, embedding (token and position tables) and
non-embedding (everything else; an untied output matrix counts as non-embedding, since it is
a matmul every token pays for). Kaplan et al. fit non-embedding N; Hoffmann et al. use total N.

FLOPs follow Hoffmann et al. 2022 Appendix F: every matmul, attention logits and the output layer
included, the backward pass twice the forward. One deliberate difference: the token-embedding
lookup is a gather, not a matmul, so it is not charged the 2*V*D that Appendix F adds; the
count is of the work a compiled step really does, which the tests check against XLA's own count.
Attention is charged the full T x T score matrix (as Appendix F does and as the XLA kernel computes),
not the causal half.
"""

from __future__ import annotations

import dataclasses

from scaling.config import ModelConfig

COUNTING = "hoffmann2022-appendix-f, no embedding-lookup term, full (non-causal) attention matrix"


@dataclasses.dataclass(frozen=True)
class Accounting:
    n_params: int
    n_params_embedding: int
    n_params_non_embedding: int
    flops_per_token: float  # training (forward + backward) FLOPs per token, exact count
    flops_per_token_6n: float  # the 6N approximation with total N, for comparison
    forward_flops_per_token: float
    flops_counting: str = COUNTING

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _layer_params(cfg: ModelConfig) -> int:
    D, NH, F = cfg.d_model, cfg.n_head * cfg.head_dim, cfg.ff_dim
    bias = int(cfg.bias)
    norm = D * (1 + bias) if cfg.norm == "layernorm" else D
    attention = D * 3 * NH + bias * 3 * NH + NH * D + bias * D
    mlp_in = 2 * F if cfg.mlp == "swiglu" else F
    mlp = D * mlp_in + bias * mlp_in + F * D + bias * D
    return 2 * norm + attention + mlp


def count(cfg: ModelConfig) -> Accounting:
    if cfg.vocab_size is None:
        raise ValueError("model.vocab_size is unset; counting needs it")
    V, D, T, L = cfg.vocab_size, cfg.d_model, cfg.seq_len, cfg.n_layer
    NH, F, N = cfg.n_head * cfg.head_dim, cfg.ff_dim, cfg.n_head

    embedding = V * D + (T * D if cfg.position == "learned" else 0)
    final_norm = D * (1 + int(cfg.bias)) if cfg.norm == "layernorm" else D
    head = 0 if cfg.tie_embeddings else D * V
    non_embedding = L * _layer_params(cfg) + final_norm + head
    total = embedding + non_embedding

    attention = (
        2 * 3 * D * NH  # q, k, v projections
        + 2 * T * NH  # q @ k^T logits
        + 3 * N * T  # softmax
        + 2 * T * NH  # probabilities @ v
        + 2 * NH * D  # output projection
    )
    mlp = 2 * (3 if cfg.mlp == "swiglu" else 2) * D * F
    forward = L * (attention + mlp) + 2 * D * V
    return Accounting(
        n_params=total,
        n_params_embedding=embedding,
        n_params_non_embedding=non_embedding,
        flops_per_token=3.0 * forward,
        flops_per_token_6n=6.0 * total,
        forward_flops_per_token=float(forward),
    )

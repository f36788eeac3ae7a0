"""Parameter and FLOP counts from the config alone, so a sweep can be planned without building a model.

N is reported three ways: total, embedding (token and position tables) and
non-embedding (everything else; an untied output matrix counts as non-embedding, since it is
a matmul every token pays for). Kaplan et al. fit non-embedding N; Hoffmann et al. use total N.

What "exact" means here: ``flops_per_token`` is the matmul FLOPs of one training step per token,
2 x M x N x K per matmul, term by term as in Hoffmann et al. 2022 Appendix F (projections,
attention logits, attention-weighted values, MLP, output layer; the backward pass twice the
forward, one matmul for the input gradient and one for the weight gradient). It equals the sum
over the ``dot`` instructions of the compiled train step to the FLOP, which the tests check per
term at several shapes. Three decisions:

- Causal attention is charged the full T x T score matrix, as Appendix F does and as the dense XLA path
  (``model.causal_attention``) computes it (every score, half of them masked afterwards), so
  the count is what the CPU and float32 GPU paths really do. A causal flash kernel (cuDNN, chosen
  on GPU in bfloat16) is built to skip fully masked tiles and does about half of the "logits" and "values"
  terms; there the count is the conventional one, above the work done by up to half those terms.
- The token-embedding lookup is a gather, not a matmul, so it is not charged the 2 x V x D that
  Appendix F adds (its gradient is a scatter-add, also not a matmul).
- Appendix F's softmax term (3 x heads x T per token and layer) is left out: it is elementwise
  work, and XLA's real elementwise work is several times that nominal 3 per score (norms,
  GELU/SiLU, RoPE, residual adds, masking, cross-entropy). The tests measure what XLA's total
  ``cost_analysis()`` count adds to the matmuls: per token, 2-4% of the matmul count at
  the tested 0.1M-0.4M-parameter shapes (0.7% at d_model 384, T 256); per step, about 24 FLOPs per parameter
  (AdamW, clipping, the gradient-norm metric), whatever the batch.
"""

from __future__ import annotations

import dataclasses

from scaling.config import ModelConfig

COUNTING = ("matmul FLOPs per hoffmann2022 appendix F: no embedding-lookup or softmax term, "
            "full (non-causal) attention matrix")


@dataclasses.dataclass(frozen=True)
class Accounting:
    """The size and cost of one model config, as written to ``run.json`` and used to plan budgets.

    Parameter counts are in parameters (N); FLOP figures are FLOPs per trained token, so a run of
    D tokens costs ``flops_per_token * D`` FLOPs. ``flops_counting`` names the convention (the
    module docstring) so a reader of a run directory knows what was counted.
    """

    n_params: int  # total N: embedding + non-embedding (Hoffmann et al. 2022 convention)
    n_params_embedding: int  # token table V x D, plus the T x D position table when learned
    n_params_non_embedding: int  # everything else, an untied output matrix included (Kaplan et al. 2020 N)
    flops_per_token: float  # training (forward + backward) matmul FLOPs per token, exact count
    flops_per_token_6n: float  # the 6N approximation with total N, for comparison
    forward_flops_per_token: float  # forward-pass matmul FLOPs per token (one third of flops_per_token)
    flops_counting: str = COUNTING

    def as_dict(self) -> dict:
        """The fields as a plain JSON-ready dict (ints and floats), keyed by field name."""
        return dataclasses.asdict(self)


def _layer_params(cfg: ModelConfig) -> int:
    D, NH, F = cfg.d_model, cfg.n_head * cfg.head_dim, cfg.ff_dim
    bias = int(cfg.bias)
    norm = D * (1 + bias) if cfg.norm == "layernorm" else D
    attention = D * 3 * NH + bias * 3 * NH + NH * D + bias * D
    mlp_in = 2 * F if cfg.mlp == "swiglu" else F
    mlp = D * mlp_in + bias * mlp_in + F * D + bias * D
    return 2 * norm + attention + mlp


def forward_matmul_terms(cfg: ModelConfig) -> dict[str, int]:
    """Forward-pass matmul FLOPs per token, by term: {"qkv", "logits", "values", "out", "mlp", "head"}.

    Each is 2 x (inputs contracted) x (outputs) per token, summed over layers (Hoffmann et al. 2022,
    Appendix F). With L layers, width D, attention width NH = n_head x head_dim, MLP width F,
    context T and vocabulary V: "qkv" = L·2·D·3NH, "logits" = L·2·T·NH (q @ k^T over the full
    T x T matrix), "values" = L·2·T·NH (probabilities @ v), "out" = L·2·NH·D, "mlp" = L·2·k·D·F with
    k = 2 matrices for GELU and 3 for SwiGLU, "head" = 2·D·V (the output layer, tied or not).
    Values are ints, in FLOPs per token. Raises ValueError when the vocabulary size is unset.
    """
    if cfg.vocab_size is None:
        raise ValueError("model.vocab_size is unset; counting needs it")
    V, D, T, L = cfg.vocab_size, cfg.d_model, cfg.seq_len, cfg.n_layer
    NH, F = cfg.n_head * cfg.head_dim, cfg.ff_dim
    return {
        "qkv": L * 2 * D * 3 * NH,
        "logits": L * 2 * T * NH,
        "values": L * 2 * T * NH,
        "out": L * 2 * NH * D,
        "mlp": L * 2 * (3 if cfg.mlp == "swiglu" else 2) * D * F,
        "head": 2 * D * V,
    }


def count(cfg: ModelConfig) -> Accounting:
    """Parameter counts (in parameters) and training FLOPs per token for ``cfg``, without building it.

    Training FLOPs are 3x the forward matmul FLOPs of ``forward_matmul_terms`` (the backward pass
    does one matmul for the input gradient and one for the weight gradient per forward matmul,
    Hoffmann et al. 2022 Appendix F); the module docstring says what is and is not counted.
    ``flops_per_token_6n`` is Kaplan et al. 2020's C ≈ 6N per token with total N, kept for
    comparison. Raises ValueError when the vocabulary size is unset.
    """
    forward = sum(forward_matmul_terms(cfg).values())
    V, D, T, L = cfg.vocab_size, cfg.d_model, cfg.seq_len, cfg.n_layer
    embedding = V * D + (T * D if cfg.position == "learned" else 0)
    final_norm = D * (1 + int(cfg.bias)) if cfg.norm == "layernorm" else D
    head = 0 if cfg.tie_embeddings else D * V
    non_embedding = L * _layer_params(cfg) + final_norm + head
    total = embedding + non_embedding
    return Accounting(
        n_params=total,
        n_params_embedding=embedding,
        n_params_non_embedding=non_embedding,
        flops_per_token=3.0 * forward,  # the backward pass is two matmuls per forward matmul
        flops_per_token_6n=6.0 * total,
        forward_flops_per_token=float(forward),
    )

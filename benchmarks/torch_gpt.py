"""The PyTorch peer for bench_step.py: a GPT-2-style model of the same shape, trained the way a
well-tuned PyTorch user would (torch.compile, bf16 autocast, fused AdamW, fused SDPA attention).

It is a yardstick, not part of the product: written here so the comparison is reproducible with
the GPU machine's preinstalled torch, on synthetic tokens.
"""

from __future__ import annotations

import math
import statistics
import time


def _modules():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, d_model: int, n_head: int):
            super().__init__()
            self.n_head = n_head
            self.norm_attn = nn.LayerNorm(d_model)
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.out = nn.Linear(d_model, d_model)
            self.norm_mlp = nn.LayerNorm(d_model)
            self.up = nn.Linear(d_model, 4 * d_model)
            self.down = nn.Linear(4 * d_model, d_model)

        def forward(self, x):
            B, T, D = x.shape
            q, k, v = self.qkv(self.norm_attn(x)).split(D, dim=2)
            q, k, v = (t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.out(y.transpose(1, 2).reshape(B, T, D))
            return x + self.down(F.gelu(self.up(self.norm_mlp(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self, n_layer: int, d_model: int, seq_len: int, vocab: int):
            super().__init__()
            self.embed = nn.Embedding(vocab, d_model)
            self.pos = nn.Embedding(seq_len, d_model)
            self.blocks = nn.ModuleList(Block(d_model, max(d_model // 64, 1)) for _ in range(n_layer))
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab, bias=False)
            self.head.weight = self.embed.weight
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("out.weight", "down.weight")) else 0.02
                    nn.init.normal_(p, std=std)

        def forward(self, idx, targets):
            x = self.embed(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.norm(x))
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    return torch, GPT


def benchmark(n_layer: int, d_model: int, batch: int, seq_len: int, vocab: int,
              windows: int, steps: int, warmup: int) -> dict:
    torch, GPT = _modules()
    device = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = GPT(n_layer, d_model, seq_len, vocab).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    compiled = torch.compile(model)
    generator = torch.Generator(device=device).manual_seed(0)
    tokens = torch.randint(0, vocab, (batch, seq_len + 1), device=device, generator=generator)

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = compiled(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    step()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - started
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    rates = []
    for _ in range(windows):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        rates.append(steps * batch * seq_len / (time.perf_counter() - started))
    return {"tokens_per_s": statistics.median(rates), "compile_s": compile_s,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30, "torch": torch.__version__}

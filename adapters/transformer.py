"""The project's own decoder-only Transformer, in one file.

A small, modern GPT: token embeddings -> n_layer x [RMSNorm -> causal self-attention with
rotary position embeddings -> residual, RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm ->
linear head over the vocabulary. The recipe of Llama / Qwen2 (without biases), written to be
read top to bottom like nanoGPT.

Parameter names deliberately follow the Hugging Face Llama/Qwen naming
(``model.embed_tokens.weight``, ``model.layers.3.self_attn.q_proj.weight``, ...): freeze
patterns such as ``"model.layers.[0-5].*"`` then mean the same thing for this model and for
an imported Qwen, and the names read familiarly in ``model-info``.

Shapes in comments: B batch, T sequence length, C n_embd, nh query heads, nkv key/value
heads, hd head dim (C // nh), V vocabulary size.
"""

from __future__ import annotations

import math

import msgspec
import torch
import torch.nn as nn
import torch.nn.functional as F


class TransformerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    vocab_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4  # fewer than n_head: grouped-query attention (query heads share K/V)
    n_embd: int = 128
    mlp_hidden: int = 0  # 0: the SwiGLU default, about 8/3 * n_embd (see resolved())
    max_seq_len: int = 256  # the context length: positions beyond it were never trained
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # the output head reuses the token embedding matrix
    dropout: float = 0.0
    eos_token_id: int | None = None  # the tokenizer's end-of-text id: generation stops there

    def __post_init__(self) -> None:
        for key in ("vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "max_seq_len"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"the head size n_embd / n_head ({self.n_embd // self.n_head}) must be even "
                             "(rotary embeddings rotate pairs of channels)")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if self.mlp_hidden < 0 or not 0.0 <= self.dropout < 1.0 or self.rope_theta <= 0 or self.norm_eps <= 0:
            raise ValueError("mlp_hidden must be >= 0, dropout in [0, 1), rope_theta and norm_eps > 0")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden(self) -> int:
        """Width of the MLP. SwiGLU has three matrices instead of two, so 2/3 of the usual
        4 * n_embd keeps the parameter count of a GELU MLP; rounded up to a multiple of 32."""
        if self.mlp_hidden:
            return self.mlp_hidden
        return 32 * math.ceil(8 * self.n_embd / 3 / 32)


class RMSNorm(nn.Module):
    """Scale each vector to unit root-mean-square, then by a learned gain (no mean, no bias)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32: the mean of squares underflows/overflows in bf16/fp16.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_tables(head_dim: int, seq_len: int, theta: float,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position times each channel pair's frequency: two (T, hd) tables.

    Computed on the fly (not stored as buffers): it is cheap, so nothing but learned weights
    lives in the state dict and the model can be built on the meta device and loaded.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    positions = torch.arange(seq_len, device=device, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)  # (T, hd/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hd): channel i pairs with i + hd/2
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x_i, x_{i+hd/2}) channel pair of x (B, heads, T, hd) by its position's angle.

    The dot product of a rotated query and key then depends only on their distance, which is
    how attention learns relative positions. ("Rotate half" layout, as in Llama and Qwen.)
    """
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = nn.Linear(config.n_embd, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.n_kv_head != self.n_head:
            # Grouped-query attention: each K/V head serves n_head / n_kv_head query heads.
            # Fewer K/V heads means a smaller KV projection (and cache) for little quality.
            repeat = self.n_head // self.n_kv_head
            k = k.repeat_interleave(repeat, dim=1)  # (B, nh, T, hd)
            v = v.repeat_interleave(repeat, dim=1)
        # Fused softmax(q k^T / sqrt(hd) + causal mask) v: flash/memory-efficient kernels
        # where available, never materialising the (T, T) matrix.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # re-assemble heads: (B, T, C)
        return self.o_proj(y)


class SwiGLU(nn.Module):
    """MLP with a gated linear unit: down(silu(gate(x)) * up(x)). Trains better than GELU."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.hidden, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.hidden, bias=False)
        self.down_proj = nn.Linear(config.hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm residual block: normalising the input of each branch (not the residual
    stream) keeps the stream's scale free and deep stacks trainable without warm-up tricks."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = CausalSelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.resid_dropout(self.self_attn(self.input_layernorm(x), cos, sin))
        x = x + self.resid_dropout(self.mlp(self.post_attention_layernorm(x)))
        return x


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.n_embd),
            layers=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            norm=RMSNorm(config.n_embd, config.norm_eps),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()
        self.apply(self._init_weights)
        # GPT-2's scaled init: each block adds two branches to the residual stream, so their
        # output projections start smaller to keep the stream's variance flat with depth.
        for name, param in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def tie_weights(self) -> None:
        """Share one (V, C) matrix between input embedding and output head when configured:
        it saves V * C parameters, which dominate a small model."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for token ids (B, T)."""
        B, T = input_ids.shape
        if T > self.config.max_seq_len:
            raise ValueError(f"sequence of {T} tokens is longer than max_seq_len={self.config.max_seq_len}")
        cos, sin = rotary_tables(self.config.head_dim, T, self.config.rope_theta, input_ids.device)  # (T, hd)
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        for block in self.model.layers:
            x = block(x, cos, sin)  # (B, T, C)
        x = self.model.norm(x)
        return self.lm_head(x)  # (B, T, V)

    def num_params(self) -> int:
        """Parameters counted once (a tied head is the embedding, not a second matrix)."""
        return sum(p.numel() for p in self.parameters())

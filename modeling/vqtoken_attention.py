# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""VQ-Attention: mixes a video's token-hash index map with its codebook into the tokens the language model reads."""

import torch
from torch import nn
from torch.nn import functional as F

from .configuration_vqtoken_llava_onevision import VQTokenLlavaOnevisionConfig


class VQTokenMultiheadAttention(nn.Module):
    """
    Multi-head attention with a packed input projection, parameter-compatible with `torch.nn.MultiheadAttention`
    (`in_proj_weight`, `in_proj_bias`, `out_proj`), computed with `scaled_dot_product_attention`.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * hidden_size))
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """
        Args:
            queries (`torch.Tensor` of shape `(query_length, hidden_size)`)
            memory (`torch.Tensor` of shape `(memory_length, hidden_size)`): keys and values.

        Returns:
            `torch.Tensor` of shape `(query_length, hidden_size)`.
        """
        weight_q, weight_kv = self.in_proj_weight.split([queries.shape[-1], 2 * queries.shape[-1]])
        bias_q, bias_kv = self.in_proj_bias.split([queries.shape[-1], 2 * queries.shape[-1]])
        query = F.linear(queries, weight_q, bias_q)
        key, value = F.linear(memory, weight_kv, bias_kv).chunk(2, dim=-1)
        query, key, value = (
            x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(0, 1) for x in (query, key, value)
        )
        attended = F.scaled_dot_product_attention(query, key, value, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(attended.transpose(0, 1).flatten(-2))


class VQTokenDecoderLayer(nn.Module):
    """
    The released VQ-Attention block: one post-norm transformer decoder layer as `torch.nn.TransformerDecoderLayer`
    builds it by default (ReLU feed-forward, LayerNorm eps 1e-5, no positional encoding) and with its parameter names.
    """

    def __init__(self, config: VQTokenLlavaOnevisionConfig):
        super().__init__()
        hidden_size = config.text_config.hidden_size
        heads = config.vqtoken_attention_heads
        dropout = config.vqtoken_attention_dropout
        self.self_attn = VQTokenMultiheadAttention(hidden_size, heads, dropout)
        self.multihead_attn = VQTokenMultiheadAttention(hidden_size, heads, dropout)
        self.linear1 = nn.Linear(hidden_size, config.vqtoken_attention_intermediate_size)
        self.linear2 = nn.Linear(config.vqtoken_attention_intermediate_size, hidden_size)
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-5)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-5)
        self.norm3 = nn.LayerNorm(hidden_size, eps=1e-5)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """
        Args:
            queries (`torch.Tensor` of shape `(length, hidden_size)`)
            codebook (`torch.Tensor` of shape `(length, hidden_size)`)

        Returns:
            `torch.Tensor` of shape `(length, hidden_size)`.
        """
        hidden = self.norm1(queries + self.dropout(self.self_attn(queries, queries)))
        hidden = self.norm2(hidden + self.dropout(self.multihead_attn(hidden, codebook)))
        feed_forward = self.linear2(self.dropout(F.relu(self.linear1(hidden))))
        return self.norm3(hidden + self.dropout(feed_forward))


class VQTokenAttention(nn.Module):
    """
    The learned VQ-Attention of VQToken. Each frame's row of the index map, read as float numbers, is projected to one
    query; the queries attend to themselves and then to the codebook.
    """

    def __init__(self, config: VQTokenLlavaOnevisionConfig):
        super().__init__()
        self.to_q_proj = nn.Linear(config.vqtoken_tokens_per_frame, config.text_config.hidden_size)
        self.decoder_layer = VQTokenDecoderLayer(config)

    def forward(self, index_map: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """
        Args:
            index_map (`torch.LongTensor` of shape `(num_frames, tokens_per_frame)`): cluster id of every token.
            codebook (`torch.Tensor` of shape `(num_clusters, hidden_size)`).

        Returns:
            `torch.Tensor` of shape `(max(num_frames, num_clusters), hidden_size)`. When the number of frames and of
            clusters differ, the shorter of queries and codebook is repeated cyclically and cut to the longer length,
            as the released code does.
        """
        queries = self.to_q_proj(index_map.to(self.to_q_proj.weight.dtype))
        codebook = codebook.to(queries.dtype)
        length = max(queries.shape[0], codebook.shape[0])
        queries = repeat_cyclically(queries, length)
        codebook = repeat_cyclically(codebook, length)
        return self.decoder_layer(queries, codebook)


def repeat_cyclically(rows: torch.Tensor, length: int) -> torch.Tensor:
    """Repeats the rows of `rows` (`(n, ...)`) in order until there are `length` of them: `(length, ...)`."""
    repeats = -(-length // rows.shape[0])
    return rows.repeat(repeats, *([1] * (rows.ndim - 1)))[:length]


__all__ = ["VQTokenAttention", "VQTokenDecoderLayer", "VQTokenMultiheadAttention", "repeat_cyclically"]

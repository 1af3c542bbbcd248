"""Fake FusedSDPA: the real forward signature, computed with torch's scaled_dot_product_attention.

As the real kernel: q/k/v are [B, H, S, D]; K/V may have fewer heads than Q (a divisor of them,
or 1) and are shared across each group of query heads.
"""
import torch
import torch.nn.functional as F

from habana_frameworks.fake_log import record


class FusedSDPA:
    @staticmethod
    def apply(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, softmax_mode="None",
              recompute_mode=None, valid_seq_len=None, seq_padding_type="left", return_dropout_mask=False,
              return_attn_probs=False, window_size=(-1, -1), sink=None):
        record("FusedSDPA", tuple(q.shape), tuple(k.shape), attn_mask.dtype if attn_mask is not None else None,
               softmax_mode, recompute_mode)
        if q.dim() != 4 or q.shape[1] % k.shape[1]:
            raise AssertionError(f"FusedSDPA: unsupported shapes q {tuple(q.shape)} k {tuple(k.shape)}")
        if valid_seq_len is not None and not is_causal:
            raise AssertionError("Valid sequence length is supported only in inference with is_causal mask case")
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                                              scale=scale, enable_gqa=k.shape[1] != q.shape[1])

"""Bucket generation, selection and step splitting (pure functions, no model)."""
from __future__ import annotations

import doctest

import pytest

import runtime.buckets as buckets_mod
from runtime.buckets import Bucket, BucketSpec, make_buckets, plan_launches, select_bucket
from runtime.model_inputs import StepRow

SPEC = BucketSpec(max_model_len=256, block_size=16, max_num_seqs=8, max_num_batched_tokens=128)


def test_docstring_examples_hold():
    assert doctest.testmod(buckets_mod).failed == 0


def test_exponential_buckets_respect_the_token_budget():
    bs = make_buckets(SPEC)
    assert all(b.batch * b.query_len <= 128 for b in bs if b.kind == "prefill")
    assert max(b.batch for b in bs if b.kind == "decode") == 8
    assert {b.num_blocks for b in bs if b.kind == "prefill"} == {16}


def test_linear_and_explicit_spacing():
    lin = make_buckets(BucketSpec(256, 16, 8, 128, strategy="linear", linear_step=2))
    assert sorted({b.batch for b in lin if b.kind == "decode"}) == [1, 3, 5, 7, 8]
    explicit = make_buckets(BucketSpec(256, 16, 8, 128, prefill_shapes=((1, 64),), decode_batches=(2, 8)))
    assert [b.name for b in explicit if b.kind == "prefill"] == ["prefill_b1_q64_m16"]
    assert sorted({b.batch for b in explicit if b.kind == "decode"}) == [2, 8]


def test_bad_spec_is_a_clear_error():
    with pytest.raises(ValueError, match="multiple of block_size"):
        BucketSpec(max_model_len=250, block_size=16, max_num_seqs=8, max_num_batched_tokens=128)
    with pytest.raises(ValueError, match="strategy"):
        BucketSpec(256, 16, 8, 128, strategy="fibonacci")


def test_selection_picks_the_smallest_bucket_that_holds_the_step():
    bs = make_buckets(SPEC)
    assert select_bucket(bs, "decode", 3, 1, 2).name == "decode_b4_m4"
    assert select_bucket(bs, "decode", 3, 1, 5).name == "decode_b4_m16"
    assert select_bucket(bs, "prefill", 1, 33, 3).name == "prefill_b1_q64_m16"
    assert select_bucket(bs, "decode", 9, 1, 1) is None


def test_batch_larger_than_largest_decode_bucket_is_split():
    rows = [StepRow([5], 10, [i + 1]) for i in range(11)]
    launches = plan_launches(make_buckets(SPEC), rows, is_prefill=False, block_size=16)
    assert [len(l.chunks) for l in launches] == [8, 3]
    assert [l.shape for l in launches] == [(8, 1, 4), (4, 1, 4)]
    assert sorted(i for l in launches for i in l.row_ids) == list(range(11))


def test_prompt_longer_than_largest_prefill_bucket_is_chunked_in_order():
    rows = [StepRow(list(range(200)), 0, list(range(1, 14))), StepRow([1, 2, 3], 0, [30])]
    launches = plan_launches(make_buckets(SPEC), rows, is_prefill=True, block_size=16)
    pieces = [(i, c.start_pos, len(c.token_ids)) for l in launches for i, c in zip(l.row_ids, l.chunks)]
    assert pieces == [(0, 0, 128), (1, 0, 3), (0, 128, 72)]
    assert all(l.shape[1] >= max(len(c.token_ids) for c in l.chunks) for l in launches)

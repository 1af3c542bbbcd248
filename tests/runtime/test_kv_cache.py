"""BlockManager: allocation, reference counts, prefix sharing and LRU eviction, driven by hand."""
import pytest

from runtime.kv_cache import NULL_BLOCK_ID, BlockManager, slot_ids
from runtime.sequence import Sequence


def make_seq(seq_id: int, token_ids: list[int]) -> Sequence:
    return Sequence(seq_id=seq_id, req_id=f"req-{seq_id}", prompt_token_ids=token_ids)


def admit_and_compute(blocks: BlockManager, seq: Sequence) -> None:
    """Allocate `seq` and pretend the runner computed all its uncached tokens."""
    num_new = seq.num_tokens - blocks.get_num_cached_tokens(seq)
    blocks.allocate(seq, num_new)
    seq.num_computed_tokens += num_new
    blocks.cache_full_blocks(seq)


def test_allocate_hands_out_real_blocks_and_free_returns_them():
    blocks = BlockManager(num_blocks=5, block_size=4)
    seq = make_seq(0, list(range(10)))
    blocks.allocate(seq, 10)
    assert seq.block_table == [1, 2, 3]
    assert [blocks.ref_count(b) for b in seq.block_table] == [1, 1, 1]
    assert blocks.usage == pytest.approx(3 / 4)
    blocks.free(seq)
    assert seq.block_table == []
    assert blocks.usage == 0.0
    assert blocks.num_free_blocks == 4


def test_null_block_is_never_handed_out_and_exhaustion_is_refused():
    blocks = BlockManager(num_blocks=4, block_size=2, enable_prefix_caching=False)
    seqs = [make_seq(i, [i, i]) for i in range(3)]
    for seq in seqs:
        assert blocks.can_allocate(seq, 2)
        blocks.allocate(seq, 2)
    assert sorted(b for seq in seqs for b in seq.block_table) == [1, 2, 3]
    assert NULL_BLOCK_ID not in {b for seq in seqs for b in seq.block_table}
    extra = make_seq(9, [7, 7])
    assert not blocks.can_allocate(extra, 2)
    with pytest.raises(RuntimeError, match="can_allocate"):
        blocks.allocate(extra, 2)
    assert blocks.usage == 1.0


def test_append_slots_adds_a_block_only_at_a_block_boundary():
    blocks = BlockManager(num_blocks=8, block_size=4)
    seq = make_seq(0, [1, 2, 3, 4])
    blocks.allocate(seq, 4)
    seq.num_computed_tokens = 4
    seq.append_token(5)
    assert blocks.can_append(seq, 1)
    blocks.append_slots(seq, 1)
    assert len(seq.block_table) == 2
    seq.num_computed_tokens = 5
    seq.append_token(6)
    blocks.append_slots(seq, 1)
    assert len(seq.block_table) == 2


def test_equal_prefixes_share_full_blocks_with_reference_counts():
    blocks = BlockManager(num_blocks=10, block_size=4)
    a = make_seq(0, list(range(10)))
    admit_and_compute(blocks, a)
    b = make_seq(1, list(range(8)) + [99, 98])
    assert blocks.get_num_cached_tokens(b) == 8
    blocks.allocate(b, 2)
    assert b.block_table[:2] == a.block_table[:2]
    assert b.block_table[2] != a.block_table[2]
    assert b.num_cached_tokens == b.num_computed_tokens == 8
    assert [blocks.ref_count(x) for x in b.block_table] == [2, 2, 1]
    assert (blocks.prefix_cache_queries, blocks.prefix_cache_hits) == (20, 8)
    blocks.free(a)
    assert [blocks.ref_count(x) for x in b.block_table] == [1, 1, 1]
    assert blocks.usage == pytest.approx(3 / 9)
    blocks.free(b)
    assert blocks.usage == 0.0


def test_the_last_token_is_always_computed_even_on_a_full_hit():
    blocks = BlockManager(num_blocks=10, block_size=4)
    a = make_seq(0, list(range(8)))
    admit_and_compute(blocks, a)
    b = make_seq(1, list(range(8)))
    assert blocks.get_num_cached_tokens(b) == 4  # not 8: the last block is recomputed for logits
    blocks.allocate(b, 4)
    assert b.block_table[0] == a.block_table[0]
    assert b.block_table[1] != a.block_table[1]


def test_a_block_hash_depends_on_its_whole_prefix():
    blocks = BlockManager(num_blocks=10, block_size=2)
    admit_and_compute(blocks, make_seq(0, [1, 2, 3, 4, 5]))
    assert blocks.get_num_cached_tokens(make_seq(1, [3, 4, 5])) == 0  # [3, 4] followed [1, 2] there


def test_freed_blocks_stay_cached_until_reused_least_recently_freed_first():
    blocks = BlockManager(num_blocks=4, block_size=2)
    a, b = make_seq(0, [1, 2, 7]), make_seq(1, [3, 4, 7])
    admit_and_compute(blocks, a)
    blocks.free(a)
    admit_and_compute(blocks, b)
    blocks.free(b)
    assert blocks.usage == 0.0
    assert blocks.get_num_cached_tokens(make_seq(2, [1, 2, 9])) == 2
    assert blocks.get_num_cached_tokens(make_seq(3, [3, 4, 9])) == 2
    admit_and_compute(blocks, make_seq(4, [5, 6, 8]))  # two blocks: one never cached, then a's (older)
    assert blocks.get_num_cached_tokens(make_seq(5, [1, 2, 9])) == 0
    assert blocks.get_num_cached_tokens(make_seq(6, [3, 4, 9])) == 2


def test_a_hit_on_a_freed_cached_block_takes_it_back_from_the_free_queue():
    blocks = BlockManager(num_blocks=4, block_size=2)
    a = make_seq(0, [1, 2, 7])
    admit_and_compute(blocks, a)
    shared = a.block_table[0]
    blocks.free(a)
    b = make_seq(1, [1, 2, 9])
    admit_and_compute(blocks, b)
    assert b.block_table[0] == shared
    assert blocks.ref_count(shared) == 1
    assert blocks.num_free_blocks == 1


def test_blocks_filled_during_decode_are_cached():
    blocks = BlockManager(num_blocks=8, block_size=4)
    a = make_seq(0, [1, 2, 3])
    admit_and_compute(blocks, a)
    a.append_token(4)
    blocks.append_slots(a, 1)
    a.num_computed_tokens += 1
    blocks.cache_full_blocks(a)
    assert blocks.get_num_cached_tokens(make_seq(1, [1, 2, 3, 4, 5])) == 4


def test_prefix_caching_off_shares_nothing_and_counts_nothing():
    blocks = BlockManager(num_blocks=10, block_size=4, enable_prefix_caching=False)
    a, b = make_seq(0, list(range(9))), make_seq(1, list(range(9)))
    admit_and_compute(blocks, a)
    admit_and_compute(blocks, b)
    assert not set(a.block_table) & set(b.block_table)
    assert (blocks.prefix_cache_queries, blocks.prefix_cache_hits) == (0, 0)


def test_slot_ids_follow_the_block_table():
    assert slot_ids([7, 3], block_size=4, start_pos=3, num_tokens=2) == [31, 12]


@pytest.mark.parametrize("num_blocks, block_size, phrase", [(1, 4, "at least 2 blocks"), (8, 0, "block_size is 0")])
def test_impossible_cache_shapes_are_rejected(num_blocks, block_size, phrase):
    with pytest.raises(ValueError, match=phrase):
        BlockManager(num_blocks, block_size)

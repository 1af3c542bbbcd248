"""BlockManager: the paged KV cache's block allocator, with prefix caching. Ids only, no tensors.

The cache is `num_blocks` blocks of `block_size` token slots; slot = block_id * block_size + offset.
Block 0 is the NULL block: padding writes there, so it is never handed to a sequence.

Prefix caching (on by default, as in vLLM): once every token of a full block has its K/V computed,
the block is registered under hash(parent block's hash, its token ids). A later sequence whose
tokens hash to the same chain reuses those blocks (reference counted) instead of recomputing them.
Only full blocks are shared, and never a sequence's last token: it must be computed to give logits.
A block whose count drops to zero joins the free queue but stays findable by its hash until it is
handed out again; the queue hands out blocks holding nothing cached first, then cached blocks
least recently freed first (LRU eviction).
"""
from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence as Ids

from runtime.sequence import Sequence

NULL_BLOCK_ID = 0


def hash_block(parent_hash: bytes | None, token_ids: Ids[int]) -> bytes:
    """Hash of one full block: sha256 over the parent block's hash and this block's token ids.

    sha256 rather than Python's hash(): a collision would silently serve another prompt's K/V.
    """
    digest = hashlib.sha256(parent_hash or b"")
    digest.update(array("q", token_ids).tobytes())
    return digest.digest()


def slot_ids(block_table: list[int], block_size: int, start_pos: int, num_tokens: int) -> list[int]:
    """Cache slot of each position start_pos .. start_pos + num_tokens - 1.

    Example: block_table [7, 3], block_size 4, start_pos 3, num_tokens 2 -> [31, 12]
    (position 3 is offset 3 of block 7, position 4 is offset 0 of block 3).
    """
    return [block_table[p // block_size] * block_size + p % block_size
            for p in range(start_pos, start_pos + num_tokens)]


class BlockManager:
    """Hands out KV-cache blocks to sequences and shares full blocks across equal prefixes."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 2:
            raise ValueError(f"num_blocks is {num_blocks}, but the KV cache needs at least 2 blocks "
                             "(block 0 is reserved for padding); give the cache more memory.")
        if block_size < 1:
            raise ValueError(f"block_size is {block_size}; set it to a positive number of tokens.")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.prefix_cache_queries = 0  # tokens of admitted sequences looked up in the prefix cache
        self.prefix_cache_hits = 0     # of those, tokens found cached
        self._ref_counts = [0] * num_blocks
        self._hash_of_block: list[bytes | None] = [None] * num_blocks
        self._block_of_hash: dict[bytes, int] = {}
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(1, num_blocks))  # front leaves first
        self._num_registered: dict[int, int] = {}  # seq_id -> leading blocks of its table already in the cache map

    @property
    def num_free_blocks(self) -> int:
        """Blocks that can be handed out now (including cached blocks no sequence holds)."""
        return len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of the usable blocks (all but the NULL block) held by sequences, 0..1."""
        return 1.0 - len(self._free) / (self.num_blocks - 1)

    def ref_count(self, block_id: int) -> int:
        """How many sequences hold `block_id`."""
        return self._ref_counts[block_id]

    def get_num_cached_tokens(self, seq: Sequence) -> int:
        """Tokens of `seq` that allocate() would take from the prefix cache (a look-up, no change)."""
        return len(self._find_cached_blocks(seq)) * self.block_size

    def can_allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Whether allocate(seq, num_new_tokens) would find enough free blocks."""
        hits = self._find_cached_blocks(seq)
        num_new_blocks = self._blocks_for(len(hits) * self.block_size + num_new_tokens) - len(hits)
        num_revived = sum(1 for b in hits if self._ref_counts[b] == 0)  # cached but free: leave the queue
        return num_revived + num_new_blocks <= len(self._free)

    def allocate(self, seq: Sequence, num_new_tokens: int) -> None:
        """Give a sequence that holds no blocks its cached prefix plus room for `num_new_tokens`.

        Sets seq.block_table, and seq.num_cached_tokens = seq.num_computed_tokens = the cached
        prefix length (a multiple of block_size, below seq.num_tokens). Call can_allocate first.
        """
        if seq.block_table:
            raise RuntimeError(f"sequence {seq.seq_id} already holds blocks; free it before allocating again")
        if not self.can_allocate(seq, num_new_tokens):
            raise RuntimeError(f"not enough free KV blocks for sequence {seq.seq_id}; check can_allocate first")
        hits = self._find_cached_blocks(seq)
        for block_id in hits:
            if self._ref_counts[block_id] == 0:
                del self._free[block_id]
            self._ref_counts[block_id] += 1
        seq.block_table = list(hits)
        seq.num_cached_tokens = seq.num_computed_tokens = len(hits) * self.block_size
        self._num_registered[seq.seq_id] = len(hits)
        if self.enable_prefix_caching:
            self.prefix_cache_queries += seq.num_tokens
            self.prefix_cache_hits += seq.num_cached_tokens
        self.append_slots(seq, num_new_tokens)

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Whether `seq` can get slots for `num_new_tokens` tokens past its computed ones."""
        return self._num_missing_blocks(seq, num_new_tokens) <= len(self._free)

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> None:
        """Grow seq.block_table to cover seq.num_computed_tokens + num_new_tokens tokens."""
        num_missing = self._num_missing_blocks(seq, num_new_tokens)
        if num_missing > len(self._free):
            raise RuntimeError(f"not enough free KV blocks for sequence {seq.seq_id}; check can_append first")
        seq.block_table.extend(self._take_free_block() for _ in range(num_missing))

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Register the blocks of `seq` that became full of computed tokens (prompt or decode).

        Call after seq.num_computed_tokens advanced, i.e. once their K/V are really written.
        """
        num_full = seq.num_computed_tokens // self.block_size
        first = self._num_registered.get(seq.seq_id, 0)
        if not self.enable_prefix_caching or num_full <= first:
            return
        self._extend_hashes(seq, num_full)
        for i in range(first, num_full):
            block_hash, block_id = seq.block_hashes[i], seq.block_table[i]
            if block_hash not in self._block_of_hash:  # a twin computed in the same step keeps the first copy
                self._block_of_hash[block_hash] = block_id
                self._hash_of_block[block_id] = block_hash
        self._num_registered[seq.seq_id] = num_full

    def free(self, seq: Sequence) -> None:
        """Drop the sequence's hold on its blocks; cached ones stay findable until reused."""
        # Tail blocks first: they are the least likely to be shared, so they are evicted first.
        for block_id in reversed(seq.block_table):
            self._ref_counts[block_id] -= 1
            if self._ref_counts[block_id] == 0:
                self._free[block_id] = None
                if self._hash_of_block[block_id] is None:  # nothing worth keeping: reuse it first
                    self._free.move_to_end(block_id, last=False)
        seq.block_table = []
        self._num_registered.pop(seq.seq_id, None)

    def _blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _num_missing_blocks(self, seq: Sequence, num_new_tokens: int) -> int:
        return max(0, self._blocks_for(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table))

    def _take_free_block(self) -> int:
        block_id, _ = self._free.popitem(last=False)
        block_hash = self._hash_of_block[block_id]
        if block_hash is not None:  # evict: its old contents are about to be overwritten
            del self._block_of_hash[block_hash]
            self._hash_of_block[block_id] = None
        self._ref_counts[block_id] = 1
        return block_id

    def _find_cached_blocks(self, seq: Sequence) -> list[int]:
        """Cached blocks matching the longest prefix of full blocks, leaving the last token uncached."""
        if not self.enable_prefix_caching or not seq.use_prefix_cache:
            return []
        max_blocks = (seq.num_tokens - 1) // self.block_size
        self._extend_hashes(seq, max_blocks)
        hits = []
        for block_hash in seq.block_hashes[:max_blocks]:
            block_id = self._block_of_hash.get(block_hash)
            if block_id is None:
                break
            hits.append(block_id)
        return hits

    def _extend_hashes(self, seq: Sequence, num_full_blocks: int) -> None:
        hashes, size = seq.block_hashes, self.block_size
        while len(hashes) < num_full_blocks:
            i = len(hashes)
            hashes.append(hash_block(hashes[-1] if hashes else None, seq.all_token_ids[i * size:(i + 1) * size]))

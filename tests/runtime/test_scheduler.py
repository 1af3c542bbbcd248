"""Scheduler driven by a fake runner: no model, but a fake KV memory that checks the block plumbing.

FakeRunner writes each scheduled token id into its cache slot and, for sampled rows, reads the
whole context back through the block table and samples a token that depends on every token and
its order. A wrong block table, slot, shared prefix block or recomputation changes the outputs,
which are compared with a plain loop over the same function.
"""
import pytest

from runtime.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from runtime.sequence import Sequence, SequenceStatus


def next_token(context: list[int]) -> int:
    return sum((i + 1) * t for i, t in enumerate(context)) % 97 + 1


def reference(prompt: list[int], max_tokens: int) -> list[int]:
    tokens = list(prompt)
    for _ in range(max_tokens):
        tokens.append(next_token(tokens))
    return tokens[len(prompt):]


class FakeRunner:
    def __init__(self, block_size: int):
        self.block_size = block_size
        self.memory: dict[int, int] = {}  # slot -> token id whose K/V sits there

    def execute(self, out: SchedulerOutput) -> dict[int, int]:
        sampled = {}
        for row in out.scheduled_seqs:
            assert len(row.slot_ids) == len(row.token_ids) == len(row.positions)
            assert min(row.slot_ids) >= self.block_size, "real tokens never touch the NULL block"
            self.memory.update(zip(row.slot_ids, row.token_ids))
            if row.is_sampled:
                bs = self.block_size
                context = [self.memory[row.block_table[p // bs] * bs + p % bs] for p in range(row.seq_len)]
                sampled[row.seq_id] = next_token(context)
        return sampled


def make_config(**overrides) -> SchedulerConfig:
    values = dict(max_model_len=32, block_size=4, num_blocks=64, max_num_seqs=8, max_num_batched_tokens=64)
    return SchedulerConfig(**(values | overrides))


def make_seq(seq_id: int, prompt: list[int], req_id: str | None = None) -> Sequence:
    return Sequence(seq_id=seq_id, req_id=req_id or f"req-{seq_id}", prompt_token_ids=prompt)


def step(scheduler: Scheduler, runner: FakeRunner, max_tokens: int) -> SchedulerOutput:
    """One engine step: schedule, run, account, stop at max_tokens."""
    out = scheduler.schedule()
    for seq in scheduler.update_from_output(out, runner.execute(out)):
        if seq.num_output_tokens >= max_tokens:
            scheduler.finish(seq, "length")
    return out


def run_all(scheduler: Scheduler, seqs: list[Sequence], max_tokens: int,
            arrivals: dict[int, list[Sequence]] | None = None) -> list[SchedulerOutput]:
    runner = FakeRunner(scheduler.config.block_size)
    for seq in seqs:
        scheduler.add(seq)
    outs: list[SchedulerOutput] = []
    while scheduler.has_unfinished_seqs() or (arrivals and max(arrivals) >= len(outs)):
        for seq in (arrivals or {}).get(len(outs), []):
            scheduler.add(seq)
        outs.append(step(scheduler, runner, max_tokens))
        assert len(outs) < 500, "the scheduler stopped making progress"
    return outs


def prompts(*lengths: int) -> list[list[int]]:
    return [[(7 * i + j) % 50 + 1 for j in range(n)] for i, n in enumerate(lengths)]


def assert_outputs_match_reference(seqs: list[Sequence], max_tokens: int) -> None:
    for seq in seqs:
        assert seq.is_finished
        assert seq.output_token_ids == reference(seq.prompt_token_ids, max_tokens), f"seq {seq.seq_id}"


@pytest.mark.parametrize("overrides, phrase", [
    (dict(max_num_seqs=0), "max_num_seqs is 0"),
    (dict(num_blocks=1), "at least 2 blocks"),
    (dict(max_num_seqs=16, max_num_batched_tokens=8), "raise max_num_batched_tokens or lower max_num_seqs"),
    (dict(enable_chunked_prefill=False, max_num_batched_tokens=16), "enable chunked prefill"),
    (dict(num_blocks=8), "lower max_model_len or give the cache more blocks"),
])
def test_config_rejects_limits_that_cannot_work(overrides, phrase):
    with pytest.raises(ValueError, match=phrase):
        make_config(**overrides)


def test_add_rejects_bad_sequences():
    scheduler = Scheduler(make_config())
    scheduler.add(make_seq(0, [1, 2]))
    with pytest.raises(ValueError, match="already scheduled"):
        scheduler.add(make_seq(0, [3]))
    with pytest.raises(ValueError, match="between 1 and max_model_len"):
        scheduler.add(make_seq(1, []))
    with pytest.raises(ValueError, match="between 1 and max_model_len"):
        scheduler.add(make_seq(2, [1] * 33))


def test_one_request_is_prefilled_then_decoded_and_frees_its_blocks():
    scheduler, runner = Scheduler(make_config()), FakeRunner(4)
    seq = make_seq(0, [5, 6, 7, 8, 9, 10])
    scheduler.add(seq)
    first = step(scheduler, runner, max_tokens=3)
    assert first.is_prefill and first.num_scheduled_tokens == 6
    (row,) = first.scheduled_seqs
    assert (row.token_ids, row.start_pos, row.is_sampled) == (seq.prompt_token_ids, 0, True)
    assert row.positions == [0, 1, 2, 3, 4, 5]
    assert len(row.block_table) == 2 and 0 not in row.block_table
    assert row.slot_ids == [row.block_table[p // 4] * 4 + p % 4 for p in range(6)]
    second = step(scheduler, runner, max_tokens=3)
    assert not second.is_prefill
    (row,) = second.scheduled_seqs
    assert (row.token_ids, row.start_pos, row.seq_len) == ([seq.output_token_ids[0]], 6, 7)
    assert row.slot_ids == [row.block_table[1] * 4 + 2]
    step(scheduler, runner, max_tokens=3)
    assert_outputs_match_reference([seq], 3)
    assert scheduler.block_manager.usage == 0.0
    assert step(scheduler, runner, max_tokens=3).finished_seq_ids == [0]


def test_max_num_seqs_bounds_the_batch_and_new_requests_join_as_others_finish():
    scheduler = Scheduler(make_config(max_num_seqs=2))
    seqs = [make_seq(i, p) for i, p in enumerate(prompts(3, 4, 5, 6, 7))]
    outs = run_all(scheduler, seqs, max_tokens=4)
    assert max(len(out.scheduled_seqs) for out in outs) == 2
    first_step = {}
    for n, out in enumerate(outs):
        for row in out.scheduled_seqs:
            first_step.setdefault(row.seq_id, n)
    assert first_step[0] == first_step[1] == 0
    assert min(first_step[2], first_step[3], first_step[4]) > 0
    assert_outputs_match_reference(seqs, 4)


def test_token_budget_bounds_every_step_and_splits_what_does_not_fit():
    scheduler = Scheduler(make_config(max_num_seqs=4, max_num_batched_tokens=8))
    seqs = [make_seq(i, p) for i, p in enumerate(prompts(5, 5, 5))]
    outs = run_all(scheduler, seqs, max_tokens=3)
    first = outs[0]
    assert [(r.seq_id, len(r.token_ids), r.is_sampled) for r in first.scheduled_seqs] == [(0, 5, True), (1, 3, False)]
    for out in outs:
        assert out.num_scheduled_tokens == sum(len(r.token_ids) for r in out.scheduled_seqs) <= 8
    assert_outputs_match_reference(seqs, 3)


def test_a_long_prompt_is_prefilled_in_chunks_and_sampled_only_at_the_end():
    scheduler, runner = Scheduler(make_config(max_num_seqs=4, max_num_batched_tokens=8)), FakeRunner(4)
    seq = make_seq(0, prompts(20)[0])
    scheduler.add(seq)
    chunks = []
    for _ in range(3):
        (row,) = step(scheduler, runner, max_tokens=2).scheduled_seqs
        chunks.append((row.start_pos, len(row.token_ids), row.is_sampled, seq.num_output_tokens))
    assert chunks == [(0, 8, False, 0), (8, 8, False, 0), (16, 4, True, 1)]
    step(scheduler, runner, max_tokens=2)
    assert_outputs_match_reference([seq], 2)


def test_without_chunked_prefill_a_prompt_waits_for_a_step_with_room():
    config = make_config(max_model_len=8, num_blocks=16, max_num_batched_tokens=8, enable_chunked_prefill=False)
    scheduler = Scheduler(config)
    seqs = [make_seq(i, p) for i, p in enumerate(prompts(5, 5))]
    outs = run_all(scheduler, seqs, max_tokens=2)
    assert [[r.seq_id for r in out.scheduled_seqs] for out in outs[:2]] == [[0], [1]]
    assert all(len(r.token_ids) == 5 for out in outs[:2] for r in out.scheduled_seqs)
    assert_outputs_match_reference(seqs, 2)


def test_steps_are_all_prefill_or_all_decode_and_arrivals_prefill_first():
    scheduler = Scheduler(make_config(max_num_batched_tokens=8))
    seqs = [make_seq(i, p) for i, p in enumerate(prompts(6, 3, 12))]
    outs = run_all(scheduler, seqs[:1], max_tokens=5, arrivals={2: seqs[1:2], 4: seqs[2:]})
    for out in outs:
        if not out.is_prefill:
            assert all(len(r.token_ids) == 1 and r.is_sampled for r in out.scheduled_seqs)
    assert [r.seq_id for r in outs[2].scheduled_seqs] == [1] and outs[2].is_prefill
    assert [r.seq_id for r in outs[3].scheduled_seqs] == [0, 1] and not outs[3].is_prefill
    assert_outputs_match_reference(seqs, 5)


@pytest.mark.parametrize("enable_prefix_caching", [False, True])
def test_newest_sequence_is_preempted_when_blocks_run_out_and_recomputed_later(enable_prefix_caching):
    config = make_config(max_model_len=10, block_size=2, num_blocks=7, enable_prefix_caching=enable_prefix_caching)
    scheduler = Scheduler(config)
    a, b = make_seq(0, [1, 2, 3]), make_seq(1, [4, 5, 6])
    outs = run_all(scheduler, [a, b], max_tokens=6)
    n = next(n for n, out in enumerate(outs) if out.preempted_seq_ids)
    assert outs[n].preempted_seq_ids == [1]
    assert [r.seq_id for r in outs[n].scheduled_seqs] == [0]
    resumed = next(r for out in outs[n + 1:] for r in out.scheduled_seqs if r.seq_id == 1)
    assert resumed.is_sampled
    if enable_prefix_caching:  # its head blocks were still cached; its tail block went to seq 0 first
        assert resumed.start_pos == 4 and resumed.token_ids == b.all_token_ids[4:7]
    else:  # recomputed over the prompt and every token generated before the preemption
        assert resumed.start_pos == 0 and resumed.token_ids == b.all_token_ids[:7]
    assert_outputs_match_reference([a, b], 6)
    assert scheduler.block_manager.usage == 0.0


def test_a_preempted_sequence_goes_to_the_front_of_the_waiting_queue():
    config = make_config(max_model_len=10, block_size=2, num_blocks=7, max_num_seqs=2, enable_prefix_caching=False)
    scheduler, runner = Scheduler(config), FakeRunner(2)
    seqs = [make_seq(i, p) for i, p in enumerate(prompts(3, 3, 3))]
    for seq in seqs:
        scheduler.add(seq)
    while not step(scheduler, runner, max_tokens=6).preempted_seq_ids:
        pass
    assert list(scheduler.waiting) == [seqs[1], seqs[2]]
    assert (seqs[1].status, seqs[1].num_computed_tokens, seqs[1].block_table) == (SequenceStatus.PREEMPTED, 0, [])


def test_requests_with_a_common_prefix_share_cached_blocks():
    scheduler, runner = Scheduler(make_config()), FakeRunner(4)
    system = list(range(1, 9))
    a, b = make_seq(0, system + [20, 21]), make_seq(1, system + [30])
    scheduler.add(a)
    step(scheduler, runner, max_tokens=4)
    scheduler.add(b)
    (row,) = step(scheduler, runner, max_tokens=4).scheduled_seqs
    assert (row.seq_id, row.start_pos, row.token_ids) == (1, 8, [30])
    assert row.block_table[:2] == a.block_table[:2]
    assert [scheduler.block_manager.ref_count(x) for x in a.block_table[:2]] == [2, 2]
    assert (scheduler.block_manager.prefix_cache_queries, scheduler.block_manager.prefix_cache_hits) == (19, 8)
    while scheduler.has_unfinished_seqs():
        step(scheduler, runner, max_tokens=4)
    assert_outputs_match_reference([a, b], 4)


def test_abort_frees_every_sequence_of_the_request_at_once():
    scheduler, runner = Scheduler(make_config(max_num_seqs=2)), FakeRunner(4)
    twins = [make_seq(0, [1, 2, 3, 4, 5], "req-x"), make_seq(1, [1, 2, 3, 4, 5], "req-x")]
    other = make_seq(2, [9, 8, 7], "req-y")
    for seq in twins + [other]:
        scheduler.add(seq)
    step(scheduler, runner, max_tokens=10)
    out = scheduler.schedule()
    assert scheduler.abort("req-x") == twins
    assert scheduler.update_from_output(out, runner.execute(out)) == []
    assert [s.finish_reason for s in twins] == ["abort", "abort"]
    assert (scheduler.num_running, scheduler.num_waiting) == (0, 1)
    assert scheduler.block_manager.usage == 0.0
    assert scheduler.schedule().finished_seq_ids == [0, 1]
    assert scheduler.abort("req-y") == [other]
    assert not scheduler.has_unfinished_seqs() and scheduler.block_manager.usage == 0.0


def test_scheduling_is_deterministic():
    def workload() -> list[SchedulerOutput]:
        config = make_config(max_model_len=16, block_size=2, num_blocks=10, max_num_seqs=3, max_num_batched_tokens=8)
        seqs = [make_seq(i, p) for i, p in enumerate(prompts(9, 4, 4, 7, 2))]
        return run_all(Scheduler(config), seqs[:3], max_tokens=5, arrivals={3: seqs[3:]})
    first = workload()
    assert any(out.preempted_seq_ids for out in first) and any(len(out.scheduled_seqs) == 3 for out in first)
    assert workload() == first

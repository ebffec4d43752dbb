"""The examples' final check: every rank's dispatch and combine outputs against moedist's reference model.

Each rank that took part records its inputs and outputs (Record); check_records gives all of them to the global-view
reference model (moedist.reference), which computes what every rank must get, compares bit for bit (the written
prefixes of the dispatch outputs; the rows of y, rstd and x of the tokens the combine writes) and returns a short
summary. It raises AssertionError on the first difference.

The combine's expand_x in the example is the dispatch's expand_x converted to bfloat16 (int8 values, exactly), so
the reference combine gets the reference dispatch's rows converted the same way.
"""

import collections

import numpy as np
import torch

from moedist import reference as ref

Record = collections.namedtuple(
    "Record",
    "rank x expert_ids scales expert_scales residual_x gamma const_expert_alpha_1 const_expert_alpha_2 "
    "const_expert_v dispatched combined",
)


def _bits(t):
    """uint16 bits of a bfloat16 tensor (C order)."""
    return t.contiguous().view(torch.int16).numpy().view(np.uint16)


def _same(what, got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.tobytes() != want.tobytes():
        bad = "shape" if got.shape != want.shape else f"{int(np.count_nonzero(got != want))} elements"
        raise AssertionError(f"{what}: differs from the reference model ({bad}; got shape {got.shape}, "
                             f"expected {want.shape})")


def check_records(records, *, elastic_info, moe_expert_num, quant_mode, global_bs, zero_expert_num, copy_expert_num,
                  const_expert_num, norm_eps, shared_expert_num=0, shared_expert_rank_num=0):
    """Checks the ranks' records (None for a rank that did not call) against the reference; returns a summary."""
    world = len(records)
    live = [r for r in records if r is not None]
    first = live[0]
    bs, h = first.x.shape
    k = first.expert_ids.shape[1]
    cfg = ref.Config(ep_world_size=world, moe_expert_num=moe_expert_num, top_k=k, hidden=h,
                     shared_expert_num=shared_expert_num, shared_expert_rank_num=shared_expert_rank_num,
                     zero_expert_num=zero_expert_num, copy_expert_num=copy_expert_num,
                     const_expert_num=const_expert_num, global_bs=global_bs, quant_mode=quant_mode,
                     norm_eps=norm_eps, elastic_info=None if elastic_info is None else elastic_info.tolist())

    din = [[None if r is None else ref.DispatchInput(x=_bits(r.x), expert_ids=r.expert_ids.numpy(),
                                                     scales=None if r.scales is None else r.scales.numpy())
            for r in records]]
    dout = ref.dispatch(cfg, din)

    rows = 0
    cin = [[None] * world]
    for p, r in enumerate(records):
        if r is None:
            continue
        want = dout[0][p]
        expand_x, dynamic_scales, assist, token_nums, ep_recv = r.dispatched
        n = want.num_rows
        rows += n
        where = f"rank {p}"
        if quant_mode == 2:
            _same(f"{where} expand_x", expand_x[:n].numpy(), want.expand_x)
            _same(f"{where} dynamic_scales", dynamic_scales[:n].numpy(), want.dynamic_scales)
        else:
            _same(f"{where} expand_x", _bits(expand_x[:n]), want.expand_x)
        _same(f"{where} assist_info_for_combine", assist[:want.assist_info_for_combine.size].numpy(),
              want.assist_info_for_combine)
        _same(f"{where} expert_token_nums", token_nums[:want.expert_token_nums.size].numpy(), want.expert_token_nums)
        _same(f"{where} ep_recv_counts", ep_recv[:want.ep_recv_counts.size].numpy(), want.ep_recv_counts)
        # The example's "expert": expand_x.to(bfloat16), applied to the reference's rows.
        if quant_mode == 2:
            rows_in = _bits(torch.from_numpy(want.expand_x).to(torch.bfloat16))
        else:
            rows_in = want.expand_x
        cin[0][p] = ref.CombineInput(
            expand_x=rows_in, assist_info_for_combine=want.assist_info_for_combine,
            ep_send_counts=want.ep_recv_counts, expert_scales=r.expert_scales.numpy(),
            residual_x=_bits(r.residual_x).reshape(bs, h), gamma=_bits(r.gamma), ori_x=_bits(r.x),
            const_expert_alpha_1=_bits(r.const_expert_alpha_1) if const_expert_num else None,
            const_expert_alpha_2=_bits(r.const_expert_alpha_2) if const_expert_num else None,
            const_expert_v=_bits(r.const_expert_v) if const_expert_num else None)
    cout = ref.combine(cfg, din, cin)

    tokens = 0
    for p, r in enumerate(records):
        if r is None:
            continue
        want = cout[0][p]
        y, rstd, x = r.combined
        w = want.written
        tokens += int(w.sum())
        _same(f"rank {p} y", _bits(y).reshape(bs, h)[w], want.y[w])
        _same(f"rank {p} rstd_out", rstd.numpy().reshape(bs)[w], want.rstd[w])
        _same(f"rank {p} x", _bits(x).reshape(bs, h)[w], want.x[w])

    removed = [p for p, r in enumerate(records) if r is None]
    took_part = f"{len(live)} of {world} ranks took part"
    if removed:
        took_part += f" (removed by elastic scale-in: {', '.join(map(str, removed))})"
    quant = ", int8 with dynamic scales" if quant_mode == 2 else ""
    return (f"reference check: {took_part}\n"
            f"  npu_moe_distribute_dispatch_v2: {rows} rows received{quant}: bit-exact\n"
            f"  npu_moe_distribute_combine_add_rms_norm: {tokens} tokens, y, rstd_out and x: bit-exact\n"
            f"  OK")

# torch_npu's single-operator example for npu_moe_distribute_combine_add_rms_norm (dispatch_v2, then the combine
# with residual add and RmsNorm), running on the CPU through moedist with every rank a thread of this process: the
# groups come from moedist.create_inprocess_group instead of torch.distributed. Every line that differs from the
# torch_npu page is marked "# moedist:"; README.md lists the changes and why. The run ends with a check of every
# rank's outputs against the reference model (moedist.reference) and a short summary.
import os
import torch
import random
import moedist  # moedist: in-process groups
import moedist.torch_npu as torch_npu  # moedist: instead of `import torch_npu`
import numpy as np
from threading import Thread as Process  # moedist: ranks are threads
from check_reference import Record, check_records  # moedist: the reference check at the end

# Modes
quant_mode = 2                       # 2: dynamic quantization
is_dispatch_scales = True            # with dynamic quantization, scales may or may not be passed
input_dtype = torch.bfloat16         # dtype of the tokens
server_num = 1
server_index = 0
dev_num = 4                          # moedist: 4 ranks (threads) instead of 16 NPUs
world_size = server_num * dev_num
rank_per_dev = int(world_size / server_num)  # ranks per host
shared_expert_rank_num = 0                      # ranks that host shared experts
moe_expert_num = 32                            # MoE experts
bs = 8                                       # tokens per rank
h = 7168                                     # hidden size (length of one token)
k = 8
random_seed = 0
tp_world_size = 1
ep_world_size = int(world_size / tp_world_size)
moe_rank_num = ep_world_size - shared_expert_rank_num
local_moe_expert_num = moe_expert_num // moe_rank_num
globalBS = bs * ep_world_size
is_shared = (shared_expert_rank_num > 0)
is_quant = (quant_mode > 0)
zero_expert_num = 1   # moedist: 1 (the page has 0, yet its expert_ids use 32 and 33, the zero and copy expert ids)
copy_expert_num = 1   # moedist: 1, as above
const_expert_num = 1  # moedist: 1, as above
records = [None] * world_size  # moedist: what each rank contributes to the reference check
errors = []                    # moedist: exceptions of the rank threads

def gen_const_expert_alpha_1():
    const_expert_alpha_1 = torch.empty(size=[const_expert_num], dtype=input_dtype).uniform_(-1, 1)
    return const_expert_alpha_1

def gen_const_expert_alpha_2():
    const_expert_alpha_2 = torch.empty(size=[const_expert_num], dtype=input_dtype).uniform_(-1, 1)
    return const_expert_alpha_2

def gen_const_expert_v():
    const_expert_v = torch.empty(size=[const_expert_num, h], dtype=input_dtype).uniform_(-1, 1)
    return const_expert_v

def gen_unique_topk_array(low, high, bs, k):
    array = []
    for i in range(bs):
        top_idx = list(np.arange(low, high, dtype=np.int32))
        random.shuffle(top_idx)
        array.append(top_idx[0:k])
    return np.array(array)

def new_groups():  # moedist: threads share one process, so the groups are created once, before the ranks start
    ep_groups = [moedist.create_inprocess_group(ep_world_size) for i in range(tp_world_size)]
    tp_groups = [moedist.create_inprocess_group(tp_world_size) for i in range(ep_world_size)]
    return ep_groups, tp_groups

def get_new_group(rank):
    for i in range(tp_world_size):
        # with tp_world_size = 2 and ep_world_size = 8: [[0, 2, 4, 6, 8, 10, 12, 14], [1, 3, 5, 7, 9, 11, 13, 15]]
        ep_ranks = [x * tp_world_size + i for x in range(ep_world_size)]
        ep_group = ep_groups[i]  # moedist: instead of dist.new_group(backend="hccl", ranks=ep_ranks)
        if rank in ep_ranks:
            ep_group_t = ep_group
            print(f"rank:{rank} ep_ranks:{ep_ranks}")
    for i in range(ep_world_size):
        # with tp_world_size = 2 and ep_world_size = 8: [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]]
        tp_ranks = [x + tp_world_size * i for x in range(tp_world_size)]
        tp_group = tp_groups[i]  # moedist: instead of dist.new_group(backend="hccl", ranks=tp_ranks)
        if rank in tp_ranks:
            tp_group_t = tp_group
            print(f"rank:{rank} tp_ranks:{tp_ranks}")
    return ep_group_t, tp_group_t

def get_hcomm_info(rank, comm_group):
    hcomm_info = comm_group  # moedist: an in-process group is its name
    return hcomm_info

def warm_up_dispatch(rank, group_ep, group_tp):
    x_warm_up = torch.empty(size=[1, h], dtype=input_dtype).uniform_(-1024, 1024).to(input_dtype)  # moedist: no .npu()
    expert_ids_warm_up = torch.arange(0, k, dtype=torch.int32).unsqueeze(0)  # moedist: no .npu()

    dispatch_kwargs_before = get_dispatch_kwargs_warmup(
        x_warm_up=x_warm_up,
        expert_ids_warm_up=expert_ids_warm_up,
        group_ep=group_ep,
        group_tp=group_tp,
        ep_rank_id=rank//tp_world_size,
        tp_rank_id=rank%tp_world_size,
    )

    (
        expand_x, dynamic_scales, expand_idx,
        expert_token_nums, ep_recv_counts, tp_recv_counts, _
    ) = torch_npu.npu_moe_distribute_dispatch_v2(**dispatch_kwargs_before)


    return expand_x, dynamic_scales, expand_idx, expert_token_nums, ep_recv_counts, tp_recv_counts

def get_dispatch_kwargs_warmup(
    x_warm_up, expert_ids_warm_up, group_ep, group_tp, ep_rank_id, tp_rank_id,
):
    x_warm_up = x_warm_up.to(input_dtype)  # moedist: no .npu()
    expert_ids_warm_up = expert_ids_warm_up.to(torch.int32)  # moedist: no .npu()

    return {
        'x': x_warm_up,
        'expert_ids': expert_ids_warm_up,
        'x_active_mask': None,
        'group_ep': group_ep,
        'group_tp': group_tp,
        'ep_rank_id': ep_rank_id,
        'tp_rank_id': tp_rank_id,
        'ep_world_size': ep_world_size,
        'tp_world_size': tp_world_size,
        'expert_shard_type': 0,
        'shared_expert_num': 0,
        'shared_expert_rank_num': shared_expert_rank_num,
        'moe_expert_num': moe_expert_num,
        'scales': None,
        'quant_mode': 2,
        'global_bs': 16,
    }

def run_npu_process(rank):
    try:  # moedist: a thread's exception is collected for the main thread
        run_rank(rank)
    except BaseException as e:
        errors.append((rank, e))
        raise

def run_rank(rank):
    # moedist: no torch_npu.npu.set_device(rank) and no dist.init_process_group(backend='hccl', ...)
    rank = rank + 16 * server_index
    ep_group, tp_group = get_new_group(rank)
    ep_hcomm_info = get_hcomm_info(rank, ep_group)
    tp_hcomm_info = get_hcomm_info(rank, tp_group)

    # Input tensors
    x = torch.randn(bs, h, dtype=input_dtype)  # moedist: no .npu() (here and below)
    expert_ids = torch.tensor([[ 5,  7, 17,  4,  2,  6, 11, 16],
        [10, 12, 13, 15, 19,  4, 18,  1],
        [19, 33,  1, 17,  9,  5,  0, 32],
        [19, 11, 17,  0, 10,  5,  7,  9],
        [10, 16, 11, 17, 33,  8,  9,  3],
        [12, 19,  5,  7,  1,  3, 18, 16],
        [11,  9, 13, 16, 12, 33, 17, 14],
        [16,  4,  9,  5,  0, 10, 11, 17]], dtype=torch.int32)

    expert_scales = torch.randn(bs, k, dtype=torch.float32)
    scales_shape = (1 + moe_expert_num, h) if shared_expert_rank_num else (moe_expert_num, h)
    if is_dispatch_scales:
        scales = torch.randn(scales_shape, dtype=torch.float32)
    else:
        scales = None

    # moedist: the page's table is for 16 ranks (10 left); for 4 ranks: rank 2 is removed, 3 ranks and 24 MoE
    # experts are left (still 8 per rank), table 1 maps old -> new rank ids, table 2 new -> old.
    elastic_info = torch.tensor([1, 3, 0, 24,
                                 0, 1, -1, 2,
                                 0, 1, 3, -1], dtype=torch.int32)
    available_ranks = [0, 1, 3]
    const_expert_alpha_1 = gen_const_expert_alpha_1()
    const_expert_alpha_2 = gen_const_expert_alpha_2()
    const_expert_v = gen_const_expert_v()

    out = warm_up_dispatch(rank, ep_hcomm_info, tp_hcomm_info)

    if rank in available_ranks:
        expand_x, dynamic_scales, expand_idx, expert_token_nums, ep_recv_counts, tp_recv_counts, expand_scales = torch_npu.npu_moe_distribute_dispatch_v2(
            x=x,
            expert_ids=expert_ids,
            group_ep=ep_hcomm_info,
            group_tp=tp_hcomm_info,
            ep_world_size=ep_world_size,
            tp_world_size=tp_world_size,
            ep_rank_id=rank // tp_world_size,
            tp_rank_id=rank % tp_world_size,
            expert_shard_type=0,
            shared_expert_rank_num=shared_expert_rank_num,
            moe_expert_num=moe_expert_num,
            scales=scales,
            quant_mode=quant_mode,
            global_bs=globalBS,
            elastic_info=elastic_info,
            zero_expert_num=zero_expert_num,
            copy_expert_num=copy_expert_num,
            const_expert_num=const_expert_num)
        dispatched = (expand_x, dynamic_scales, expand_idx, expert_token_nums, ep_recv_counts)  # moedist: for the check

        if is_quant:
            expand_x = expand_x.to(input_dtype)

        bs_local = expert_ids.shape[0]
        torch.manual_seed(42)
        residual_x = torch.rand((bs_local, 1, h), dtype=torch.bfloat16)
        torch.manual_seed(random_seed)
        gamma = torch.ones(h).to(input_dtype)
        norm_eps = 1e-6
        ori_x = x  # moedist: kept for the check (the next line rebinds x)
        y, rstd_out, x = torch_npu.npu_moe_distribute_combine_add_rms_norm(
            expand_x=expand_x,
            residual_x=residual_x,
            gamma=gamma,
            norm_eps=norm_eps,
            expert_ids=expert_ids,
            expand_idx=expand_idx,
            ep_send_counts=ep_recv_counts,
            tp_send_counts=tp_recv_counts,
            expert_scales=expert_scales,
            group_ep=ep_hcomm_info,
            group_tp=tp_hcomm_info,
            ep_world_size=ep_world_size,
            tp_world_size=tp_world_size,
            ep_rank_id=rank // tp_world_size,
            tp_rank_id=rank % tp_world_size,
            expert_shard_type=0,
            shared_expert_num=0,
            shared_expert_rank_num=shared_expert_rank_num,
            moe_expert_num=moe_expert_num,
            global_bs=globalBS,
            elastic_info=elastic_info,
            ori_x=x,
            const_expert_alpha_1=const_expert_alpha_1,
            const_expert_alpha_2=const_expert_alpha_2,
            const_expert_v=const_expert_v,
            zero_expert_num=zero_expert_num,
            copy_expert_num=copy_expert_num,
            const_expert_num=const_expert_num
        )
        records[rank] = Record(rank, ori_x, expert_ids, scales, expert_scales, residual_x, gamma, const_expert_alpha_1,
                               const_expert_alpha_2, const_expert_v, dispatched, (y, rstd_out, x))  # moedist
    # moedist: no time.sleep(10): the main thread joins the ranks, then checks their records
    print(f'rank {rank} epid {rank // tp_world_size} tpid {rank % tp_world_size} npu finished! \n')

if __name__ == "__main__":
    print(f"bs={bs}")
    print(f"global_bs={globalBS}")
    print(f"shared_expert_rank_num={shared_expert_rank_num}")
    print(f"moe_expert_num={moe_expert_num}")
    print(f"k={k}")
    print(f"quant_mode={quant_mode}", flush=True)
    print(f"local_moe_expert_num={local_moe_expert_num}", flush=True)
    print(f"tp_world_size={tp_world_size}", flush=True)
    print(f"ep_world_size={ep_world_size}", flush=True)

    if tp_world_size != 1 and local_moe_expert_num > 1:
        print("unSupported tp = 2 and local moe > 1")
        exit(0)

    if shared_expert_rank_num > ep_world_size:
        print("shared_expert_rank_num must not exceed ep_world_size")
        exit(0)

    if shared_expert_rank_num > 0 and ep_world_size % shared_expert_rank_num != 0:
        print("ep_world_size must be a multiple of shared_expert_rank_num")
        exit(0)

    if moe_expert_num % moe_rank_num != 0:
        print("moe_expert_num must be a multiple of moe_rank_num")
        exit(0)

    ep_groups, tp_groups = new_groups()  # moedist
    p_list = []
    for rank in range(rank_per_dev):
        p = Process(target=run_npu_process, args=(rank,))
        p_list.append(p)
    for p in p_list:
        p.start()
    for p in p_list:
        p.join()
    if errors:  # moedist: a failed rank fails the run
        raise SystemExit(f"rank {errors[0][0]} failed: {errors[0][1]!r}")
    print(check_records(records, elastic_info=torch.tensor([1, 3, 0, 24, 0, 1, -1, 2, 0, 1, 3, -1], dtype=torch.int32),
                        moe_expert_num=moe_expert_num, quant_mode=quant_mode, global_bs=globalBS,
                        zero_expert_num=zero_expert_num, copy_expert_num=copy_expert_num,
                        const_expert_num=const_expert_num, norm_eps=1e-6))  # moedist
    print("run npu success.")

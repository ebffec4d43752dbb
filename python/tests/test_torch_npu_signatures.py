"""moedist.torch_npu offers torch_npu's functions with torch_npu's exact signatures.

The expected signatures are torch_npu's schema strings, copied literally from Ascend/op-plugin
(op_plugin/config/op_plugin_functions.yaml; the same prototypes are on the pages
docs/context/torch_npu-npu_moe_distribute_*.md). Each is parsed into (name, kind, default) and compared with
inspect.signature of moedist's function; the Python form of the prototype (what the documentation pages show,
without types) is compared as a string too.
"""

import inspect

import pytest

import moedist.torch_npu as torch_npu

SCHEMAS = {
    "npu_moe_distribute_dispatch_v2":
        'npu_moe_distribute_dispatch_v2(Tensor x, Tensor expert_ids, str group_ep, int ep_world_size, '
        'int ep_rank_id, int moe_expert_num, *, Tensor? scales=None, Tensor? x_active_mask=None, '
        'Tensor? expert_scales=None, Tensor? elastic_info=None, str group_tp="", int tp_world_size=0, '
        'int tp_rank_id=0, int expert_shard_type=0, int shared_expert_num=1, int shared_expert_rank_num=0, '
        'int quant_mode=0, int global_bs=0, int expert_token_nums_type=1, str comm_alg="", int zero_expert_num=0, '
        'int copy_expert_num=0, int const_expert_num=0) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)',
    "npu_moe_distribute_combine_v2":
        'npu_moe_distribute_combine_v2(Tensor expand_x, Tensor expert_ids, Tensor assist_info_for_combine, '
        'Tensor ep_send_counts, Tensor expert_scales, str group_ep, int ep_world_size, int ep_rank_id, '
        'int moe_expert_num, *, Tensor? tp_send_counts=None, Tensor? x_active_mask=None, '
        'Tensor? expand_scales=None, Tensor? shared_expert_x=None, Tensor? elastic_info=None, Tensor? ori_x=None, '
        'Tensor? const_expert_alpha_1=None, Tensor? const_expert_alpha_2=None, Tensor? const_expert_v=None, '
        'str group_tp="", int tp_world_size=0, int tp_rank_id=0, int expert_shard_type=0, '
        'int shared_expert_num=1, int shared_expert_rank_num=0, int global_bs=0, int comm_quant_mode=0, '
        'str comm_alg="", int zero_expert_num=0, int copy_expert_num=0, int const_expert_num=0) -> Tensor',
    "npu_moe_distribute_combine_add_rms_norm":
        'npu_moe_distribute_combine_add_rms_norm(Tensor expand_x, Tensor expert_ids, Tensor expand_idx, '
        'Tensor ep_send_counts, Tensor expert_scales, Tensor residual_x, Tensor gamma, str group_ep, '
        'int ep_world_size, int ep_rank_id, int moe_expert_num, *, Tensor? tp_send_counts=None, '
        'Tensor? x_active_mask=None, Tensor? activation_scale=None, Tensor? weight_scale=None, '
        'Tensor? group_list=None, Tensor? expand_scales=None, Tensor? shared_expert_x=None, '
        'Tensor? elastic_info=None, Tensor? ori_x=None, Tensor? const_expert_alpha_1=None, '
        'Tensor? const_expert_alpha_2=None, Tensor? const_expert_v=None, str group_tp="", int tp_world_size=0, '
        'int tp_rank_id=0, int expert_shard_type=0, int shared_expert_num=1, int shared_expert_rank_num=0, '
        'int global_bs=0, int out_dtype=0, int comm_quant_mode=0, int group_list_type=0, str comm_alg="", '
        'float norm_eps=1e-06, int zero_expert_num=0, int copy_expert_num=0, int const_expert_num=0) '
        '-> (Tensor, Tensor, Tensor)',
}

# The prototypes as the documentation pages write them (no types). Python renders "" as ''.
PROTOTYPES = {
    "npu_moe_distribute_dispatch_v2":
        'torch_npu.npu_moe_distribute_dispatch_v2(x, expert_ids, group_ep, ep_world_size, ep_rank_id, '
        'moe_expert_num, *, scales=None, x_active_mask=None, expert_scales=None, elastic_info=None, group_tp="", '
        'tp_world_size=0, tp_rank_id=0, expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, '
        'quant_mode=0, global_bs=0, expert_token_nums_type=1, comm_alg="", zero_expert_num=0, copy_expert_num=0, '
        'const_expert_num=0)',
    "npu_moe_distribute_combine_add_rms_norm":
        'torch_npu.npu_moe_distribute_combine_add_rms_norm(expand_x, expert_ids, expand_idx, ep_send_counts, '
        'expert_scales, residual_x, gamma, group_ep, ep_world_size, ep_rank_id, moe_expert_num, *, '
        'tp_send_counts=None, x_active_mask=None, activation_scale=None, weight_scale=None, group_list=None, '
        'expand_scales=None, shared_expert_x=None, elastic_info=None, ori_x=None, const_expert_alpha_1=None, '
        'const_expert_alpha_2=None, const_expert_v=None, group_tp="", tp_world_size=0, tp_rank_id=0, '
        'expert_shard_type=0, shared_expert_num=1, shared_expert_rank_num=0, global_bs=0, out_dtype=0, '
        'comm_quant_mode=0, group_list_type=0, comm_alg="", norm_eps=1e-06, zero_expert_num=0, copy_expert_num=0, '
        'const_expert_num=0)',
}


def parse_schema(schema):
    """[(name, kind, default)] of a torch schema string; default is inspect.Parameter.empty when there is none."""
    head, _, _ = schema.partition(" -> ")
    params = head[head.index("(") + 1:head.rindex(")")]
    out = []
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    for item in (p.strip() for p in params.split(",")):
        if item == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        decl, eq, default = item.partition("=")
        typ, name = decl.split()
        value = inspect.Parameter.empty
        if eq:
            if default == "None":
                value = None
            elif typ == "str":
                assert default[0] == default[-1] == '"'
                value = default[1:-1]
            elif typ == "int":
                value = int(default)
            elif typ == "float":
                value = float(default)
            else:
                raise AssertionError(f"unexpected default {item!r}")
        out.append((name, kind, value))
    return out


def actual(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_signature_matches_schema(name):
    expected = parse_schema(SCHEMAS[name])
    assert SCHEMAS[name].startswith(name + "(")
    got = actual(getattr(torch_npu, name))
    assert [e[0] for e in got] == [e[0] for e in expected], "names or order differ"
    assert got == expected
    for (_, _, d_got), (_, _, d_exp) in zip(got, expected):  # 1e-06 must stay a float, 0 an int
        assert type(d_got) is type(d_exp)


@pytest.mark.parametrize("name", sorted(PROTOTYPES))
def test_signature_matches_documented_prototype(name):
    fn = getattr(torch_npu, name)
    rendered = f"torch_npu.{name}{inspect.signature(fn)}".replace("''", '""')
    assert rendered == PROTOTYPES[name]


def test_functions_are_plain_python_functions_with_no_annotations():
    for name in SCHEMAS:
        sig = inspect.signature(getattr(torch_npu, name))
        assert sig.return_annotation is inspect.Signature.empty
        assert all(p.annotation is inspect.Parameter.empty for p in sig.parameters.values())


def test_exports():
    assert sorted(torch_npu.__all__) == sorted(SCHEMAS)


@pytest.mark.parametrize("name", ["npu_moe_distribute_dispatch", "npu_moe_distribute_combine"])
def test_v1_dispatch_and_combine_are_not_offered(name):
    assert not hasattr(torch_npu, name)
    with pytest.raises(AttributeError, match="V1"):
        getattr(torch_npu, name)

"""moedist.reference: the global-view reference model of the MoE distribute operators, for golden data.

The model takes every rank's inputs at once and computes every rank's outputs with plain loops that follow the
contract (SPEC.md) literally: DispatchV3 / DispatchV2 (``dispatch``) and CombineAddRmsNormV2 / CombineAddRmsNorm /
CombineV3 / CombineV2 (``combine``). It is written apart from moedist's operators (it shares no code with them and
links none), so it can check them, and it can check your own kernels too. See docs/reference.md.

Ranks are indexed ``[tp_index][ep_rank]``: one EP group of ``ep_world_size`` ranks, or two with
``tp_world_size == 2`` (the TP pair of EP rank e is ``[0][e]`` and ``[1][e]``). 16-bit floats are numpy ``uint16``
arrays holding the bits (bfloat16 or float16 as ``Config.x_dtype`` says); ``float16`` arrays are accepted where the
dtype is float16. Outputs are the *written prefixes* of the operators' output tensors; everything after them keeps
the caller's bytes in the operators.

    >>> from moedist import reference as ref
    >>> cfg = ref.Config(ep_world_size=4, moe_expert_num=8, top_k=2, hidden=128)
    >>> case = ref.make_case(cfg, seed=1)                 # random valid inputs and the model's outputs
    >>> case.dispatch_outputs[0][2].expand_x.shape        # rows received by EP rank 2
    >>> ref.save_case("golden/", case)                    # one .npz per rank + case.json

Run ``python3 -m moedist.reference --help`` for the command-line generator.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np

from . import _reference as _ext

__all__ = [
    "Config",
    "DispatchInput",
    "DispatchOutput",
    "CombineInput",
    "CombineOutput",
    "Case",
    "dispatch",
    "combine",
    "make_case",
    "make_elastic_info",
    "stand_in_ffn",
    "save_case",
    "load_case",
    "float_to_bf16",
    "bf16_to_float",
    "float_to_fp16",
    "fp16_to_float",
    "to_float",
    "reduce_sum",
    "rms_norm",
    "dynamic_quant",
    "comm_quant_round_trip",
    "CASE_FORMAT",
    "CASE_VERSION",
]

_DTYPES = ("bfloat16", "float16")


# ----------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    """The operators' attributes, the same on every rank (CANN attribute names in snake_case).

    ``top_k`` (alias ``K``) and ``hidden`` (alias ``H``) are the shapes of expertIds and x. ``mask_dims`` says
    whether the calls get xActiveMask: 0 (none), 1 ((Bs,) token mask) or 2 ((Bs, K) slot mask).
    ``add_rms_norm`` selects the combine: True for CombineAddRmsNormV2 / CombineAddRmsNorm (bf16 rows; residual add
    and RmsNorm; outputs y, rstd, x), False for CombineV3 / CombineV2 (rows in x_dtype; output x = the rounded sum).
    ``elastic_info`` is the elasticInfo tensor (4 + 2 * ep_world_size int32) or None; ``make_elastic_info`` builds
    one. DispatchV2 / CombineAddRmsNorm / CombineV2 are these operators with zero/copy/const_expert_num 0 and no
    elastic_info.
    """

    ep_world_size: int
    moe_expert_num: int
    top_k: int
    hidden: int
    shared_expert_num: int = 1  # CANN's default; with shared_expert_rank_num 0 the effective count is 0
    shared_expert_rank_num: int = 0
    zero_expert_num: int = 0
    copy_expert_num: int = 0
    const_expert_num: int = 0
    global_bs: int = 0
    tp_world_size: int = 0
    x_dtype: str = "bfloat16"
    quant_mode: int = 0
    expert_token_nums_type: int = 1
    comm_quant_mode: int = 0
    norm_eps: float = 1e-6
    elastic_info: Optional[Sequence[int]] = None
    mask_dims: int = 0
    add_rms_norm: bool = True

    def __post_init__(self):
        if self.x_dtype not in _DTYPES:
            raise ValueError(f"Config.x_dtype must be one of {_DTYPES}, got {self.x_dtype!r}")
        if self.mask_dims not in (0, 1, 2):
            raise ValueError(f"Config.mask_dims must be 0, 1 or 2, got {self.mask_dims!r}")
        if self.elastic_info is not None:
            self.elastic_info = [int(v) for v in np.asarray(self.elastic_info).reshape(-1)]

    K = property(lambda self: self.top_k, lambda self, v: setattr(self, "top_k", v), doc="top_k")
    H = property(lambda self: self.hidden, lambda self, v: setattr(self, "hidden", v), doc="hidden")

    @property
    def combine_dtype(self) -> str:
        """The dtype of combine's 16-bit row inputs (expand_x, shared_expert_x, ori_x, const tensors) and of x:
        x_dtype for CombineV3/V2, bfloat16 for the AddRmsNorm combines."""
        return self.x_dtype if not self.add_rms_norm else "bfloat16"

    @property
    def num_groups(self) -> int:
        """Number of EP groups: 2 with tp_world_size 2, else 1."""
        return 2 if self.tp_world_size == 2 else 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["elastic_info"] = None if self.elastic_info is None else list(self.elastic_info)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"Config: unknown fields {sorted(unknown)}")
        return cls(**d)

    def _native(self) -> "_ext.Config":
        c = _ext.Config()
        c.W = int(self.ep_world_size)
        c.M = int(self.moe_expert_num)
        c.sharedExpertNum = int(self.shared_expert_num)
        c.sharedExpertRankNum = int(self.shared_expert_rank_num)
        c.K = int(self.top_k)
        c.H = int(self.hidden)
        c.Z = int(self.zero_expert_num)
        c.C = int(self.copy_expert_num)
        c.Q = int(self.const_expert_num)
        c.globalBs = int(self.global_bs)
        c.tp = int(self.tp_world_size)
        c.fp16 = self.x_dtype == "float16"
        c.quantMode = int(self.quant_mode)
        c.expertTokenNumsType = int(self.expert_token_nums_type)
        c.commQuantMode = int(self.comm_quant_mode)
        c.normEps = float(self.norm_eps)
        c.elasticInfo = [] if self.elastic_info is None else [int(v) for v in self.elastic_info]
        c.maskDims = int(self.mask_dims)
        c.addRmsNorm = bool(self.add_rms_norm)
        return c


@dataclass
class _Topology:
    """What make_case needs of SPEC section 1 and 5 (the model itself checks everything)."""

    S: int  # effective shared expert count
    L: int  # MoE experts per MoE rank
    W_eff: int
    S_rank_eff: int
    M_eff: int
    new_of: List[int]  # physical rank -> new rank id, -1 when removed


def _topology(cfg: Config) -> _Topology:
    W, srank = cfg.ep_world_size, cfg.shared_expert_rank_num
    S = 0 if (srank == 0 and cfg.shared_expert_num == 1) else cfg.shared_expert_num
    if W <= srank or cfg.moe_expert_num % (W - srank) != 0:
        raise ValueError("moe_expert_num must be a multiple of ep_world_size - shared_expert_rank_num")
    L = cfg.moe_expert_num // (W - srank)
    e = cfg.elastic_info
    if e is not None and len(e) == 4 + 2 * W and e[0] != 0:
        return _Topology(S, L, e[1], e[2], e[3], [int(v) for v in e[4 : 4 + W]])
    return _Topology(S, L, W, srank, cfg.moe_expert_num, list(range(W)))


def make_elastic_info(
    config: Config, removed_ranks: Sequence[int], shared_rank_num_after: Optional[int] = None, is_elastic: int = 1
) -> List[int]:
    """An elasticInfo tensor (SPEC 5) for scaling in by removing ``removed_ranks`` (physical EP ranks).

    Survivors are renumbered in ascending physical order (so surviving shared-expert ranks come first); W' = the
    number of survivors, Srank' = ``shared_rank_num_after`` (default: the surviving shared-expert ranks),
    M' = L * (W' - Srank'). table2 entries from W' on are -1. With ``is_elastic=0`` the tensor is passed but ignored.
    """
    W, srank = config.ep_world_size, config.shared_expert_rank_num
    L = config.moe_expert_num // (W - srank)
    removed = {int(r) for r in removed_ranks}
    info = [-1] * (4 + 2 * W)
    nxt = shared = 0
    for r in range(W):
        if r in removed:
            continue
        info[4 + r] = nxt
        info[4 + W + nxt] = r
        nxt += 1
        shared += r < srank
    s_after = shared if shared_rank_num_after is None else int(shared_rank_num_after)
    info[0:4] = [int(is_elastic), nxt, s_after, L * (nxt - s_after)]
    return info


# ----------------------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass
class DispatchInput:
    """One rank's dispatch inputs.

    x: (Bs, H) uint16, bits of x_dtype (or float16 when x_dtype is float16). expert_ids: (Bs, K) int32.
    x_active_mask: (Bs,) or (Bs, K) bool, or None (Config.mask_dims says which). scales: (S + M, H) float32 smooth
    scales (quant_mode 2 only), or None. expert_scales and the other CANN inputs that A3 ignores are not modelled.
    """

    x: np.ndarray
    expert_ids: np.ndarray
    x_active_mask: Optional[np.ndarray] = None
    scales: Optional[np.ndarray] = None

    @property
    def bs(self) -> int:
        return int(np.shape(self.x)[0])


@dataclass
class DispatchOutput:
    """One rank's dispatch outputs: the prefix of each output tensor that the operator writes.

    expand_x: (num_rows, H) uint16 (x_dtype bits) or int8 (quant_mode 2): rows [0, num_rows) of expandXOut.
    dynamic_scales: (num_rows,) float32 with quant_mode 2, else None. assist_info_for_combine: (3 * num_own_rows,)
    int32, one (source rank id, token, slot) triple per own row. expert_token_nums: int64, the written entries
    (1 on shared-expert ranks or with one local expert, else L). ep_recv_counts: int32 inclusive prefix sums, the
    written entries (W' * L or W', doubled with TP). tp_recv_counts: (2,) int32 with tp_world_size 2, else None.
    Every other element of the operators' outputs (tail rows, expandScalesOut) is left untouched.
    """

    expand_x: np.ndarray
    assist_info_for_combine: np.ndarray
    expert_token_nums: np.ndarray
    ep_recv_counts: np.ndarray
    dynamic_scales: Optional[np.ndarray] = None
    tp_recv_counts: Optional[np.ndarray] = None

    @property
    def num_own_rows(self) -> int:
        """Rows received over EP (Nown): also the rows combine returns."""
        return int(self.assist_info_for_combine.shape[0] // 3)

    @property
    def num_rows(self) -> int:
        """Rows written to expandXOut: Nown, plus the TP peer's Npeer with tp_world_size 2."""
        return int(self.expand_x.shape[0])


@dataclass
class CombineInput:
    """One rank's combine inputs (expertIds and xActiveMask are the dispatch inputs' ones).

    expand_x: (>= num_rows, H) uint16 expert outputs, rows aligned with dispatch's expand_x (combine_dtype bits).
    assist_info_for_combine, ep_send_counts, tp_send_counts: dispatch's assist_info_for_combine, ep_recv_counts and
    tp_recv_counts (longer arrays are fine: only the prefixes are read). expert_scales: (Bs, K) float32.
    residual_x: (Bs, H) or (Bs, 1, H) bf16 bits and gamma: (H,) bf16 bits, for the AddRmsNorm combines (None for
    CombineV3/V2).
    shared_expert_x: (Bs, H) or (Bs, 1, H), ori_x: (Bs, H), const_expert_alpha_1/alpha2: (Q,), const_expert_v:
    (Q, H), all combine_dtype bits, or None.
    """

    expand_x: np.ndarray
    assist_info_for_combine: np.ndarray
    ep_send_counts: np.ndarray
    expert_scales: np.ndarray
    residual_x: Optional[np.ndarray] = None
    gamma: Optional[np.ndarray] = None
    tp_send_counts: Optional[np.ndarray] = None
    shared_expert_x: Optional[np.ndarray] = None
    ori_x: Optional[np.ndarray] = None
    const_expert_alpha_1: Optional[np.ndarray] = None
    const_expert_alpha_2: Optional[np.ndarray] = None
    const_expert_v: Optional[np.ndarray] = None


@dataclass
class CombineOutput:
    """One rank's combine outputs.

    written: (Bs,) bool, True for the tokens whose rows the operator writes (the active tokens); the rows of the
    other tokens keep the caller's bytes in the operator (here they are 0 and mean nothing). x: (Bs, H)
    combine_dtype bits (AddRmsNorm: bf16(sum + residual); CombineV3/V2: the rounded sum). y: (Bs, H) bf16 bits
    and rstd: (Bs,) float32 for the AddRmsNorm combines, None for CombineV3/V2.
    """

    written: np.ndarray
    x: np.ndarray
    y: Optional[np.ndarray] = None
    rstd: Optional[np.ndarray] = None


Ranks = List[List[Any]]  # [tp_index][ep_rank]; None for a rank removed by elastic scale-in


def _bits16(a, name: str, dtype: str) -> np.ndarray:
    """A uint16 bits array from uint16 bits, or from float16 values when the dtype is float16."""
    a = np.asarray(a)
    if a.dtype == np.float16:
        if dtype != "float16":
            raise TypeError(f"{name}: got a float16 array, but the dtype here is {dtype} (pass uint16 bits)")
        a = a.view(np.uint16)
    if a.dtype != np.uint16:
        raise TypeError(f"{name}: expected uint16 bits of {dtype}, got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def _typed(a, name: str, dtype) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {a.dtype}")
    return np.ascontiguousarray(a)


def _opt(a, fn, *args):
    return None if a is None else fn(a, *args)


def _as(cls, obj):
    if obj is None or isinstance(obj, cls):
        return obj
    if isinstance(obj, dict):
        return cls(**obj)
    raise TypeError(f"expected {cls.__name__}, a dict or None, got {type(obj).__name__}")


def _shape_groups(cfg: Config, ranks, what: str) -> None:
    if len(ranks) != cfg.num_groups or any(len(g) != cfg.ep_world_size for g in ranks):
        raise ValueError(
            f"{what}: expected [tp_index][ep_rank] lists of {cfg.num_groups} x {cfg.ep_world_size} ranks, got "
            f"{[len(g) for g in ranks]}"
        )


def _dispatch_native(cfg: Config, inputs: Ranks, what: str) -> list:
    _shape_groups(cfg, inputs, what)
    native = []
    for g, group in enumerate(inputs):
        row = []
        for p, r in enumerate(group):
            r = _as(DispatchInput, r)
            if r is None:
                row.append(None)
                continue
            where = f"{what}[{g}][{p}]."
            x = _bits16(r.x, where + "x", cfg.x_dtype)
            if x.ndim != 2:
                raise ValueError(f"{where}x: expected (Bs, H), got shape {x.shape}")
            mask = None
            if r.x_active_mask is not None:
                mask = _typed(r.x_active_mask, where + "x_active_mask", np.bool_)
                if mask.ndim != cfg.mask_dims:
                    raise ValueError(f"{where}x_active_mask: Config.mask_dims is {cfg.mask_dims}, got {mask.ndim}-D")
            elif cfg.mask_dims != 0:
                raise ValueError(f"{where}x_active_mask: required with Config.mask_dims {cfg.mask_dims}")
            row.append(
                {
                    "x": x,
                    "expert_ids": _typed(r.expert_ids, where + "expert_ids", np.int32),
                    "x_active_mask": mask,
                    "scales": _opt(r.scales, _typed, where + "scales", np.float32),
                }
            )
        native.append(row)
    return native


def dispatch(config: Config, inputs: Ranks) -> List[List[Optional[DispatchOutput]]]:
    """Every rank's dispatch outputs (DispatchV3 / DispatchV2) from every rank's inputs.

    inputs[tp_index][ep_rank]: a DispatchInput (or a dict of its fields), or None for a rank removed by elastic
    scale-in (it does not call). Returns DispatchOutput per rank, None for removed ranks. Raises ValueError when the
    inputs are outside the contract (the operators return an error there), TypeError for wrong dtypes.
    """
    outs = _ext.dispatch(config._native(), _dispatch_native(config, inputs, "dispatch_inputs"))
    return [[None if o is None else _dispatch_output(o) for o in g] for g in outs]


def _dispatch_output(o: dict) -> DispatchOutput:
    return DispatchOutput(
        expand_x=o["expand_x"],
        dynamic_scales=o["dynamic_scales"],
        assist_info_for_combine=o["assist_info_for_combine"],
        expert_token_nums=o["expert_token_nums"],
        ep_recv_counts=o["ep_recv_counts"],
        tp_recv_counts=o["tp_recv_counts"],
    )


def combine(config: Config, dispatch_inputs: Ranks, combine_inputs: Ranks) -> List[List[Optional[CombineOutput]]]:
    """Every rank's combine outputs from every rank's dispatch inputs (expert ids, masks, Bs) and combine inputs.

    config.add_rms_norm selects CombineAddRmsNormV2 / CombineAddRmsNorm (True) or CombineV3 / CombineV2 (False).
    combine_inputs[tp_index][ep_rank]: a CombineInput (or a dict of its fields), None for removed ranks. Returns
    CombineOutput per rank, None for removed ranks. Raises ValueError when the inputs are outside the contract
    (for example rows that do not match what dispatch sent).
    """
    din = _dispatch_native(config, dispatch_inputs, "dispatch_inputs")
    _shape_groups(config, combine_inputs, "combine_inputs")
    rows, bf = config.combine_dtype, "bfloat16"
    native = []
    for g, group in enumerate(combine_inputs):
        row = []
        for p, r in enumerate(group):
            r = _as(CombineInput, r)
            if r is None:
                row.append(None)
                continue
            where = f"combine_inputs[{g}][{p}]."
            bs = 0 if din[g][p] is None else din[g][p]["x"].shape[0]
            residual, gamma = r.residual_x, r.gamma
            if not config.add_rms_norm:  # CombineV3/V2 take neither; the model reads them only with add_rms_norm
                residual = np.zeros((bs, config.hidden), np.uint16) if residual is None else residual
                gamma = np.zeros((config.hidden,), np.uint16) if gamma is None else gamma
            elif residual is None or gamma is None:
                raise ValueError(f"{where}residual_x and gamma are required with Config.add_rms_norm")
            row.append(
                {
                    "expand_x": _bits16(r.expand_x, where + "expand_x", rows),
                    "assist_info_for_combine": _typed(
                        r.assist_info_for_combine, where + "assist_info_for_combine", np.int32
                    ),
                    "ep_send_counts": _typed(r.ep_send_counts, where + "ep_send_counts", np.int32),
                    "tp_send_counts": _opt(r.tp_send_counts, _typed, where + "tp_send_counts", np.int32),
                    "expert_scales": _typed(r.expert_scales, where + "expert_scales", np.float32),
                    "residual_x": _bits16(residual, where + "residual_x", bf),
                    "gamma": _bits16(gamma, where + "gamma", bf),
                    "shared_expert_x": _opt(r.shared_expert_x, _bits16, where + "shared_expert_x", rows),
                    "ori_x": _opt(r.ori_x, _bits16, where + "ori_x", rows),
                    "const_expert_alpha_1": _opt(r.const_expert_alpha_1, _bits16, where + "const_expert_alpha_1", rows),
                    "const_expert_alpha_2": _opt(r.const_expert_alpha_2, _bits16, where + "const_expert_alpha_2", rows),
                    "const_expert_v": _opt(r.const_expert_v, _bits16, where + "const_expert_v", rows),
                }
            )
        native.append(row)
    outs = _ext.combine(config._native(), din, native)
    return [[None if o is None else CombineOutput(**o) for o in g] for g in outs]


# ----------------------------------------------------------------------------------------------------------------
# Numerics: the model's own conversions and row recipes (round to nearest even everywhere)


def float_to_bf16(values) -> np.ndarray:
    """float32 values -> bf16 bits (uint16), round to nearest even; NaN stays NaN, overflow gives infinity."""
    return _ext.float_to_bf16(np.asarray(values, dtype=np.float32))


def bf16_to_float(bits) -> np.ndarray:
    """bf16 bits (uint16) -> float32 (exact)."""
    return _ext.bf16_to_float(_typed(bits, "bits", np.uint16))


def float_to_fp16(values) -> np.ndarray:
    """float32 values -> IEEE fp16 bits (uint16), round to nearest even, with subnormals."""
    return _ext.float_to_fp16(np.asarray(values, dtype=np.float32))


def fp16_to_float(bits) -> np.ndarray:
    """fp16 bits (uint16, or float16 values) -> float32 (exact)."""
    return _ext.fp16_to_float(_bits16(bits, "bits", "float16"))


def to_float(bits, dtype: str) -> np.ndarray:
    """16-bit bits of ``dtype`` ('bfloat16' or 'float16') -> float32."""
    return bf16_to_float(bits) if dtype == "bfloat16" else fp16_to_float(bits)


def _round(values, dtype: str) -> np.ndarray:
    return float_to_bf16(values) if dtype == "bfloat16" else float_to_fp16(values)


def reduce_sum(values) -> float:
    """SPEC 3.4: the A3 ReduceSum of a float32 row (64-element chunks summed by a pairwise tree, chunks in order)."""
    return _ext.reduce_sum(np.asarray(values, dtype=np.float32).reshape(-1))


def rms_norm(x, gamma, eps: float = 1e-6):
    """SPEC 3.4: RmsNorm of one unrounded float32 row x with bf16 gamma bits. Returns (y bf16 bits, rstd)."""
    return _ext.rms_norm(np.asarray(x, dtype=np.float32).reshape(-1), _bits16(gamma, "gamma", "bfloat16"), eps)


def dynamic_quant(values):
    """SPEC 2.5: dispatch's per-row int8 quantization of a float32 row. Returns (int8 row, stored scale)."""
    return _ext.dynamic_quant(np.asarray(values, dtype=np.float32).reshape(-1))


def comm_quant_round_trip(bits) -> np.ndarray:
    """SPEC 3.7: combine's int8 transport (comm_quant_mode 2) of one bf16 row and back: the bf16 bits the source
    side uses."""
    return _ext.comm_quant_round_trip(_bits16(bits, "bits", "bfloat16").reshape(-1))


# ----------------------------------------------------------------------------------------------------------------
# Random valid cases


@dataclass
class Case:
    """One complete case: the configuration, every rank's inputs and the model's outputs ([tp_index][ep_rank])."""

    config: Config
    dispatch_inputs: List[List[Optional[DispatchInput]]]
    dispatch_outputs: List[List[Optional[DispatchOutput]]]
    combine_inputs: List[List[Optional[CombineInput]]]
    combine_outputs: List[List[Optional[CombineOutput]]]
    seed: Optional[int] = None


# Independent random streams per purpose, TP index and EP rank.
_IDS, _MASK, _X, _SCALES, _WEIGHTS, _RESIDUAL, _GAMMA, _SHARED_X, _CONST, _BS = range(1, 11)


def _rng(seed: int, purpose: int, g: int = 0, p: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, purpose, g, p])


def _values(rng: np.random.Generator, shape, spread: int = 4) -> np.ndarray:
    """float32 values with varied magnitudes: a normal sample times 2^[-spread, spread] per row."""
    shape = tuple(shape)
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    exps = rng.integers(-spread, spread + 1, size=(rows, 1))
    v = rng.standard_normal((rows, shape[-1] if shape else 1)) * np.exp2(exps)
    return v.astype(np.float32).reshape(shape)


def stand_in_ffn(config: Config, tp_index: int, ep_rank: int, out: DispatchOutput) -> np.ndarray:
    """make_case's default expert FFN: (num_rows, H) rows in Config.combine_dtype (uint16 bits).

    row_i = round(fl(v_i * c)), v_i the dispatch row widened to float32 (quant_mode 2: fl(q * dynamic_scale_i)),
    c = fl(base * share): base 0.5 on a shared-expert rank, 1 + 0.125 * (local expert mod 8) on a MoE rank;
    share 1 without TP, 0.75 on TP rank 0 and 0.25 on TP rank 1 (so that combine's TP sum is about v * base).
    """
    topo = _topology(config)
    H = config.hidden
    if config.quant_mode == 2:
        v = out.expand_x.astype(np.float32) * out.dynamic_scales.astype(np.float32)[:, None]
    else:
        v = to_float(out.expand_x, config.x_dtype)
    shared_rank = topo.new_of[ep_rank] < topo.S_rank_eff
    le = np.zeros(out.num_rows, dtype=np.int64)
    if not shared_rank and topo.L > 1:
        ends = out.ep_recv_counts[topo.W_eff - 1 :: topo.W_eff][: topo.L]
        le = np.searchsorted(ends, np.arange(out.num_rows), side="right")
    if shared_rank:
        base = np.full(out.num_rows, 0.5, dtype=np.float32)
    else:
        base = np.float32(1) + np.float32(0.125) * (le % 8).astype(np.float32)
    share = np.float32(1.0) if config.tp_world_size != 2 else np.float32(0.75 if tp_index == 0 else 0.25)
    c = (base * share).astype(np.float32).reshape(-1, 1)
    return _round((v * c).astype(np.float32), config.combine_dtype).reshape(out.num_rows, H)


def make_case(
    config: Config,
    seed: int = 0,
    *,
    bs: Union[None, int, Sequence[int]] = None,
    special_fraction: float = 0.25,
    smooth_scales: bool = True,
    shared_expert_x: bool = False,
    ffn: Optional[Callable[[Config, int, int, DispatchOutput], np.ndarray]] = None,
) -> Case:
    """A random valid case for ``config`` and the model's outputs for it, deterministic in ``seed``.

    bs: tokens per EP rank (the same in both TP groups): an int, a list of ep_world_size ints (different values
    need config.global_bs = max * ep_world_size), or None: 4 with global_bs 0; with global_bs > 0, a random Bs in
    [1, global_bs / ep_world_size] per rank without masks, global_bs / ep_world_size with masks (SPEC 9).
    Expert ids are distinct within each token; MoE ids are below M' under elastic scale-in; with special experts
    (zero/copy/const_expert_num) each slot takes a special id with probability ``special_fraction``.
    Masks (Config.mask_dims): 1-D, a random active prefix in [0, Bs]; 2-D, a quarter of the tokens all-false and 30%
    false slots elsewhere (each other token keeps one true slot). Ranks removed by config.elastic_info get None.
    smooth_scales: pass (S + M, H) scales with quant_mode 2. shared_expert_x: pass sharedExpertX (needs
    shared_expert_rank_num 0). ori_x (= x in combine_dtype) and the const tensors are passed when copy / const
    experts exist. ffn(config, tp_index, ep_rank, dispatch_output) gives each rank's combine expand_x
    (default: stand_in_ffn).

    The random streams are numpy's (PCG64): the same seed gives the same case with the same numpy; keep golden data
    with save_case.
    """
    cfg = config
    topo = _topology(cfg)
    W, G, H, K = cfg.ep_world_size, cfg.num_groups, cfg.hidden, cfg.top_k
    specials = cfg.zero_expert_num + cfg.copy_expert_num + cfg.const_expert_num
    rows_dtype = cfg.combine_dtype
    if shared_expert_x and cfg.shared_expert_rank_num != 0:
        raise ValueError("make_case: shared_expert_x needs shared_expert_rank_num 0")
    if topo.M_eff + specials < K:
        raise ValueError(f"make_case: too few expert ids for top_k {K} distinct ids per token")

    # Batch sizes [g][p].
    max_bs = cfg.global_bs // W if cfg.global_bs else None
    if bs is None:
        if max_bs is None:
            sizes = [[4] * W for _ in range(G)]
        elif cfg.mask_dims != 0:
            sizes = [[max_bs] * W for _ in range(G)]
        else:
            sizes = [[int(_rng(seed, _BS, g, p).integers(1, max_bs + 1)) for p in range(W)] for g in range(G)]
    else:
        per_rank = [int(bs)] * W if np.isscalar(bs) else [int(b) for b in bs]
        if len(per_rank) != W:
            raise ValueError(f"make_case: bs needs {W} entries, got {len(per_rank)}")
        sizes = [list(per_rank) for _ in range(G)]

    moe_ids = np.arange(topo.M_eff, dtype=np.int64)
    special_ids = np.arange(cfg.moe_expert_num, cfg.moe_expert_num + specials, dtype=np.int64)
    pool = np.concatenate([moe_ids, special_ids])
    weights = None
    if specials:
        moe_w = np.full(len(moe_ids), (1 - special_fraction) / len(moe_ids))
        weights = np.concatenate([moe_w, np.full(specials, special_fraction / specials)])
        weights = weights / weights.sum()

    din: List[List[Optional[DispatchInput]]] = []
    for g in range(G):
        group = []
        for p in range(W):
            if topo.new_of[p] < 0:
                group.append(None)
                continue
            B = sizes[g][p]
            rng = _rng(seed, _IDS, g, p)
            ids = np.stack([rng.choice(pool, size=K, replace=False, p=weights) for _ in range(B)]).astype(np.int32)
            ids = ids.reshape(B, K)
            x = _round(_values(_rng(seed, _X, g, p), (B, H)), cfg.x_dtype)
            mask = None
            mrng = _rng(seed, _MASK, g, p)
            if cfg.mask_dims == 1:
                n = int(mrng.integers(0, B + 1))
                mask = np.arange(B) < n
            elif cfg.mask_dims == 2:
                mask = mrng.random((B, K)) >= 0.3
                for b in range(B):
                    if mrng.random() < 0.25:
                        mask[b, :] = False
                    elif not mask[b].any():
                        mask[b, int(mrng.integers(0, K))] = True
            scales = None
            if cfg.quant_mode == 2 and smooth_scales:
                scales = (0.5 + _rng(seed, _SCALES, g, p).random((topo.S + cfg.moe_expert_num, H))).astype(np.float32)
            group.append(DispatchInput(x=x, expert_ids=ids, x_active_mask=mask, scales=scales))
        din.append(group)

    dout = dispatch(cfg, din)
    ffn = ffn or stand_in_ffn
    cin: List[List[Optional[CombineInput]]] = []
    for g in range(G):
        group = []
        for p in range(W):
            d, o = din[g][p], dout[g][p]
            if d is None:
                group.append(None)
                continue
            B = d.bs
            rows = _bits16(ffn(cfg, g, p, o), f"ffn output [{g}][{p}]", rows_dtype)
            ci = CombineInput(
                expand_x=rows.reshape(-1, H),
                assist_info_for_combine=o.assist_info_for_combine,
                ep_send_counts=o.ep_recv_counts,
                tp_send_counts=o.tp_recv_counts,
                expert_scales=_rng(seed, _WEIGHTS, g, p).random((B, K)).astype(np.float32),
            )
            if cfg.add_rms_norm:
                ci.residual_x = float_to_bf16(_values(_rng(seed, _RESIDUAL, g, p), (B, H)))
                ci.gamma = float_to_bf16(1 + 0.25 * _rng(seed, _GAMMA, g, p).standard_normal(H).astype(np.float32))
            if shared_expert_x:
                ci.shared_expert_x = _round(_values(_rng(seed, _SHARED_X, g, p), (B, H), 2), rows_dtype)
            if cfg.copy_expert_num or cfg.const_expert_num:
                ci.ori_x = d.x if rows_dtype == cfg.x_dtype else _round(to_float(d.x, cfg.x_dtype), rows_dtype)
            if cfg.const_expert_num:
                crng = _rng(seed, _CONST, g, p)
                Q = cfg.const_expert_num
                ci.const_expert_alpha_1 = _round(crng.random(Q).astype(np.float32), rows_dtype)
                ci.const_expert_alpha_2 = _round(crng.random(Q).astype(np.float32), rows_dtype)
                ci.const_expert_v = _round(_values(crng, (Q, H), 2), rows_dtype)
            group.append(ci)
        cin.append(group)
    cout = combine(cfg, din, cin)
    return Case(cfg, din, dout, cin, cout, seed)


# ----------------------------------------------------------------------------------------------------------------
# Files: case.json + one .npz per rank

CASE_FORMAT = "moedist-reference-case"
CASE_VERSION = 1
_SECTIONS = (
    ("dispatch_in", "dispatch_inputs", DispatchInput),
    ("dispatch_out", "dispatch_outputs", DispatchOutput),
    ("combine_in", "combine_inputs", CombineInput),
    ("combine_out", "combine_outputs", CombineOutput),
)


def _rank_file(g: int, p: int) -> str:
    return f"tp{g}_ep{p}.npz"


def save_case(directory: Union[str, os.PathLike], case: Case) -> List[str]:
    """Writes ``case`` to ``directory`` (created if needed): case.json (format, version, seed, config, which ranks
    take part) and one tp<g>_ep<p>.npz per participating rank with the arrays "<section>.<field>" (sections
    dispatch_in, dispatch_out, combine_in, combine_out; fields as in the dataclasses; None fields are left out).
    See docs/reference.md for every array. Returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    cfg = case.config
    written = []
    participates = []
    for g in range(cfg.num_groups):
        flags = []
        for p in range(cfg.ep_world_size):
            ok = case.dispatch_inputs[g][p] is not None
            flags.append(ok)
            if not ok:
                continue
            arrays = {}
            for prefix, attr, cls in _SECTIONS:
                obj = getattr(case, attr)[g][p]
                if obj is None:
                    raise ValueError(f"save_case: {attr}[{g}][{p}] is missing for a participating rank")
                for f in dataclasses.fields(cls):
                    v = getattr(obj, f.name)
                    if v is not None:
                        arrays[f"{prefix}.{f.name}"] = np.asarray(v)
            path = os.path.join(directory, _rank_file(g, p))
            np.savez_compressed(path, **arrays)
            written.append(path)
        participates.append(flags)
    meta = {
        "format": CASE_FORMAT,
        "version": CASE_VERSION,
        "seed": case.seed,
        "config": cfg.to_dict(),
        "participates": participates,
    }
    path = os.path.join(directory, "case.json")
    with open(path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    written.append(path)
    return written


def load_case(directory: Union[str, os.PathLike]) -> Case:
    """Reads a case written by save_case."""
    with open(os.path.join(directory, "case.json")) as f:
        meta = json.load(f)
    if meta.get("format") != CASE_FORMAT or meta.get("version") != CASE_VERSION:
        raise ValueError(f"load_case: {directory} is not a {CASE_FORMAT} version {CASE_VERSION} directory")
    cfg = Config.from_dict(meta["config"])
    sections = {attr: [] for _, attr, _ in _SECTIONS}
    for g, flags in enumerate(meta["participates"]):
        for attr in sections:
            sections[attr].append([])
        for p, ok in enumerate(flags):
            if not ok:
                for attr in sections:
                    sections[attr][g].append(None)
                continue
            with np.load(os.path.join(directory, _rank_file(g, p))) as z:
                for prefix, attr, cls in _SECTIONS:
                    kw = {}
                    for f in dataclasses.fields(cls):
                        key = f"{prefix}.{f.name}"
                        if key in z.files:
                            kw[f.name] = z[key]
                        elif f.default is dataclasses.MISSING:
                            raise ValueError(f"load_case: {_rank_file(g, p)} lacks {key}")
                    sections[attr][g].append(cls(**kw))
    return Case(cfg, seed=meta.get("seed"), **sections)


# ----------------------------------------------------------------------------------------------------------------
# Command line: python3 -m moedist.reference [config flags] DIRECTORY


def _int_list(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip() != ""]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python3 -m moedist.reference",
        description="Write a random valid case of the MoE distribute operators and the reference model's outputs "
        "(golden data) to DIRECTORY: case.json and one tp<g>_ep<p>.npz per rank (docs/reference.md).",
    )
    ap.add_argument("directory", help="output directory (created if needed)")
    a = ap.add_argument
    a("--ep-world-size", "-W", type=int, required=True)
    a("--moe-expert-num", "-M", type=int, required=True)
    a("--top-k", "-K", type=int, required=True)
    a("--hidden", "-H", type=int, required=True)
    a("--shared-expert-num", type=int, default=1)
    a("--shared-expert-rank-num", type=int, default=0)
    a("--zero-expert-num", type=int, default=0)
    a("--copy-expert-num", type=int, default=0)
    a("--const-expert-num", type=int, default=0)
    a("--global-bs", type=int, default=0)
    a("--tp-world-size", type=int, default=0, choices=(0, 1, 2))
    a("--x-dtype", default="bfloat16", choices=_DTYPES)
    a("--quant-mode", type=int, default=0, choices=(0, 2))
    a("--expert-token-nums-type", type=int, default=1, choices=(0, 1))
    a("--comm-quant-mode", type=int, default=0, choices=(0, 2))
    a("--norm-eps", type=float, default=1e-6)
    a("--mask-dims", type=int, default=0, choices=(0, 1, 2))
    a("--combine", default="add_rms_norm", choices=("add_rms_norm", "plain"),
      help="add_rms_norm: CombineAddRmsNormV2/CombineAddRmsNorm; plain: CombineV3/CombineV2")
    a("--elastic-info", type=_int_list, default=None, help="the elasticInfo tensor, comma-separated")
    a("--removed-ranks", type=_int_list, default=None, help="scale in by removing these EP ranks (make_elastic_info)")
    a("--bs", type=_int_list, default=None, help="tokens per EP rank: one value, or one per rank")
    a("--seed", type=int, default=0)
    a("--no-smooth-scales", action="store_true", help="quant_mode 2 without smooth scales")
    a("--shared-expert-x", action="store_true", help="pass sharedExpertX to combine")
    a("--special-fraction", type=float, default=0.25)
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    cfg = Config(
        ep_world_size=args.ep_world_size,
        moe_expert_num=args.moe_expert_num,
        top_k=args.top_k,
        hidden=args.hidden,
        shared_expert_num=args.shared_expert_num,
        shared_expert_rank_num=args.shared_expert_rank_num,
        zero_expert_num=args.zero_expert_num,
        copy_expert_num=args.copy_expert_num,
        const_expert_num=args.const_expert_num,
        global_bs=args.global_bs,
        tp_world_size=args.tp_world_size,
        x_dtype=args.x_dtype,
        quant_mode=args.quant_mode,
        expert_token_nums_type=args.expert_token_nums_type,
        comm_quant_mode=args.comm_quant_mode,
        norm_eps=args.norm_eps,
        elastic_info=args.elastic_info,
        mask_dims=args.mask_dims,
        add_rms_norm=args.combine == "add_rms_norm",
    )
    if args.removed_ranks is not None:
        if args.elastic_info is not None:
            print("error: give --elastic-info or --removed-ranks, not both", file=sys.stderr)
            return 2
        cfg.elastic_info = make_elastic_info(cfg, args.removed_ranks)
    bs = None
    if args.bs is not None:
        bs = args.bs[0] if len(args.bs) == 1 else args.bs
    try:
        case = make_case(
            cfg,
            args.seed,
            bs=bs,
            special_fraction=args.special_fraction,
            smooth_scales=not args.no_smooth_scales,
            shared_expert_x=args.shared_expert_x,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = save_case(args.directory, case)
    for g in range(cfg.num_groups):
        for p in range(cfg.ep_world_size):
            d, o, c = case.dispatch_inputs[g][p], case.dispatch_outputs[g][p], case.combine_outputs[g][p]
            if d is None:
                print(f"tp{g} ep{p}: removed by elastic scale-in")
                continue
            print(
                f"tp{g} ep{p}: Bs {d.bs}, received {o.num_own_rows} rows ({o.num_rows} with TP), "
                f"{int(c.written.sum())} tokens written by combine"
            )
    print(f"wrote {len(paths)} files to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

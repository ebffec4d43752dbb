"""moedist: CANN's MoE distribute operators (MoeDistributeDispatchV3, MoeDistributeCombineAddRmsNormV2 and their
siblings) on CPUs, over numpy arrays, bit-exact with the reference model.

    import threading, numpy as np, moedist
    group = moedist.create_inprocess_group(2)            # ranks as threads; see also create_shm_group, create_mpi_group
    def rank(r):
        out = moedist.dispatch_v3(x[r], expert_ids[r], group, 2, r, moe_expert_num=2)
        ...
        moedist.combine_add_rms_norm_v2(expand_x, expert_ids[r], out.assist_info_for_combine, out.ep_recv_counts,
                                        expert_scales[r], residual_x[r], gamma, group, 2, r, 2)

Documentation: docs/python.md.
"""

from . import _C, _dtypes, _groups, _ops
from ._dtypes import *  # noqa: F401,F403  (each module's __all__ is part of the package's)
from ._groups import *  # noqa: F401,F403
from ._ops import *  # noqa: F401,F403

Error = _C.Error

from . import torch  # noqa: E402  (imports torch only when its functions are called)

__all__ = ["Error", *_ops.__all__, *_groups.__all__, *_dtypes.__all__, "torch"]

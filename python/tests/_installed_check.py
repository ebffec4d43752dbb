"""Run by test_install.py / test_pip.py with PYTHONPATH set to an installed package only: imports moedist from
there, runs the closed-form problem on two rank threads, and checks that libmoedist.so came from `argv[1]`."""

import sys
import threading

import numpy as np

import moedist

root = sys.argv[1]
assert moedist.__file__.startswith(root), f"moedist imported from {moedist.__file__}, expected under {root}"

group = moedist.create_inprocess_group(2, timeout=20)
H = 1024
results = {}


def rank(r):
    x = moedist.float32_to_bfloat16(np.full((2, H), r + 1, np.float32))
    ids = np.array([[0], [1]], np.int32)
    d = moedist.dispatch_v3(x, ids, group, 2, r, 2)
    c = moedist.combine_add_rms_norm_v2(d.expand_x, ids, d.assist_info_for_combine, d.ep_recv_counts,
                                        np.ones((2, 1), np.float32), np.zeros((2, 1, H), np.uint16),
                                        moedist.float32_to_bfloat16(np.ones(H, np.float32)), group, 2, r, 2)
    results[r] = np.array_equal(c.x[:, 0, :], x)


threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
assert results == {0: True, 1: True}, results

with open("/proc/self/maps") as maps:
    libs = {line.split()[-1] for line in maps if "libmoedist.so" in line}
assert libs and all(path.startswith(root) for path in libs), f"libmoedist.so loaded from {libs}, expected under {root}"
print("installed moedist: ok")

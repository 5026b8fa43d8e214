import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TADA_QUIET", "1")

import torch  # noqa: E402

# The tests run tiny models whose kernels are far too small to share between threads: with the
# default pool a 2-core machine spends its time synchronising (measured: a tiny AudioLDM2 generation
# 0.13 s on one thread, tens of seconds on two when the other core is busy).
torch.set_num_threads(1)

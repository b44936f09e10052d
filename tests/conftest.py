import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# CI has 2 cores; tiny networks gain nothing from intra-op threads.
torch.set_num_threads(1)

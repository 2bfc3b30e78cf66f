"""`unimae train` on Accelerate's FSDP path with CPU processes (gloo): the test's launcher.

Accelerate selects FSDP only on accelerators (on CPU it falls back to DDP), while torch's FSDP itself
runs on CPU. This switches Accelerate's state to FSDP with the plugin that ``accelerate launch
--config_file configs/accelerate/fsdp.yaml`` configured (FSDP_* variables), then runs ``unimae train``.
"""

import sys

import accelerate.accelerator as accelerator_module
import torch
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch.distributed.fsdp import FullyShardedDataParallel

_accelerator_init = accelerator_module.Accelerator.__init__
_fsdp_init = FullyShardedDataParallel.__init__


def _fsdp_accelerator_init(self, *args, **kwargs):
    _accelerator_init(self, *args, **kwargs)
    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* settings of the launch
    plugin.sync_module_states = False  # a broadcast from a device; every rank builds the same model anyway
    self.state.fsdp_plugin = plugin
    self.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def _cpu_fsdp_init(self, module, *args, device_id=None, **kwargs):
    # Accelerate passes "cpu:0", which torch's FSDP compares unequal to its CPU compute device "cpu"
    _fsdp_init(self, module, *args, device_id=torch.device("cpu"), **kwargs)


accelerator_module.Accelerator.__init__ = _fsdp_accelerator_init
FullyShardedDataParallel.__init__ = _cpu_fsdp_init

import unimae.training.loop as loop  # noqa: E402
from unimae.cli import main  # noqa: E402

# torch's FULL_STATE_DICT gather segfaults in CPU (gloo) processes; the test compares losses, and
# checkpoints under FSDP are checked on a GPU (docs/large-models.md).
loop.Recipe.save = lambda self, done: None

sys.exit(main(["train", *sys.argv[1:], "export=false"]))

"""Hot-swap: version slots with in-flight leases, and the controller that follows models.checkpoints."""

from serving.hotswap.controller import HotSwapController, SwapEvent
from serving.hotswap.hotswap_config import HotSwapConfig
from serving.hotswap.slots import ModelSlots

__all__ = ["HotSwapConfig", "HotSwapController", "ModelSlots", "SwapEvent"]

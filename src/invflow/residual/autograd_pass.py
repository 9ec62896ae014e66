"""What the running autograd pass needs: the custom autograd Functions of the residual nets
(fused LipSwish, convolution) compute only the gradients the pass will use. The log-det series'
vector–Jacobian products ask for the input's gradient alone; a Function's static
``needs_input_grad`` would make them compute the parameters' too."""
from __future__ import annotations

import torch
from torch import Tensor


def gradient_node(t: Tensor | None) -> object | None:
    """The autograd node ``t``'s gradient flows into (``None`` if ``t`` needs no gradient)."""
    if t is None or not t.requires_grad:
        return None
    return torch.autograd.graph.get_gradient_edge(t).node


def will_execute(node: object | None) -> bool:
    """Whether the running backward pass will use the gradient sent to ``node`` (from
    ``gradient_node``); ``True`` where torch cannot tell (always correct, maybe slower)."""
    if node is None:
        return False
    check = getattr(torch._C, "_will_engine_execute_node", None)
    if check is None:  # a torch without it: always compute
        return True
    try:
        return bool(check(node))
    except RuntimeError:  # not called from inside the engine
        return True


def is_batched(t: Tensor) -> bool:
    """Whether ``t`` is batched by ``vmap`` (``is_grads_batched`` backward passes use the legacy
    batching), where an autograd Function cannot be nested in another's backward."""
    functorch = getattr(torch._C, "_functorch", None)
    checks = [getattr(functorch, n, None) for n in ("is_legacy_batchedtensor", "is_batchedtensor")]
    return any(bool(check(t)) for check in checks if check is not None)

"""``<MOUS>.casa_commands.log``: every CASA call the pipeline made; we keep the product tclean calls."""
from __future__ import annotations

from pathlib import Path

from .calls import TaskCall, iter_calls


def read_commands(path: Path) -> list[TaskCall]:
    """The task calls of a pipeline ``casa_commands.log`` file.

    Parameters
    ----------
    path : Path
        The casa_commands.log file.

    Returns
    -------
    list[TaskCall]
        The task calls, in log order.
    """
    path = Path(path)
    return list(iter_calls(path.read_text(), source=path.name))


def product_tclean_calls(calls: list[TaskCall]) -> list[TaskCall]:
    """The tclean calls that made the products: the last iter1 call per (field, spw, specmode).

    Pipeline image names end in ``.iter0`` (dirty, for the mask and the noise) or ``.iter1``
    (cleaned, exported as the product); only the cleaned ones are kept, the latest one winning.

    Parameters
    ----------
    calls : list[TaskCall]
        The task calls of a casa_commands.log (``read_commands``).

    Returns
    -------
    list[TaskCall]
        The product tclean calls, in log order.
    """
    chosen: dict[tuple, TaskCall] = {}
    for call in calls:
        if call.task != "tclean" or not str(call.kwargs.get("imagename", "")).endswith(".iter1"):
            continue
        spw = call.kwargs.get("spw", "")
        key = (call.kwargs.get("field", ""), ",".join(spw) if isinstance(spw, list) else str(spw),
               call.kwargs.get("specmode", "mfs"))
        chosen[key] = call
    return list(chosen.values())

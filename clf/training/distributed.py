"""`leaving_process_group`: a distributed run's process group is destroyed before the interpreter exits.

Lightning starts the process group of a DDP run and never destroys it. Left to interpreter finalization, Gloo's
worker threads may still hold finished work items whose tensors reference Python objects; freeing them while the
interpreter is torn down aborts the process (``terminate called without an active exception``, SIGABRT) after the
run has trained and exported correctly, so a scheduler records a failed run. Destroying the group while the
interpreter is whole avoids it. The ranks first meet at a barrier, so rank zero, which hosts the rendezvous store,
does not leave while another rank still talks to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist

log = logging.getLogger(__name__)


@contextmanager
def leaving_process_group() -> Iterator[None]:
    """Destroys the default process group, if the body started one, when the body ends.

    On success every rank waits at a barrier first; after an exception the group is destroyed without one (the
    other ranks may never arrive), and the exception propagates.

    Yields:
        Nothing; wrap the code that runs the distributed stage.
    """
    try:
        yield
    except BaseException:
        _destroy(synchronize=False)
        raise
    _destroy(synchronize=True)


def _destroy(*, synchronize: bool) -> None:
    if not (dist.is_available() and dist.is_initialized()):
        return
    if synchronize:
        try:
            dist.barrier()
        except RuntimeError as err:  # a rank that already left: nothing to wait for
            log.warning("the ranks could not meet before the process group was destroyed: %s", err)
    dist.destroy_process_group()

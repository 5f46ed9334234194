"""Keeping the kernels' threads and BLAS's threads off each other's cores.

With n_threads > 1 the kernels run an OpenMP team over the batch while the output layer's products
go through NumPy's BLAS, whose own threads keep spinning for a while after each call. On a machine
with as many cores as kernel threads, those spinning threads take cores the kernels are waiting for
(measured: a fifth of the profile at L2 with two threads). So while a model with n_threads > 1 runs,
BLAS gets one thread: the head's products are thin (O columns) and lose little by it. The pools
are reached through threadpoolctl when it is installed (it comes with the bench and test extras);
the runtime needs only NumPy and SciPy, and without it the pools are left as they are.
"""

import functools
from contextlib import nullcontext

_controller = None


def _blas_pools():
    """threadpoolctl's view of the loaded BLAS libraries (made once), or None without it."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller or None


def blas_single_while(n_threads):
    """A context in which BLAS uses one thread, when the kernels use more than one."""
    if n_threads <= 1:
        return nullcontext()
    pools = _blas_pools()
    if pools is None:
        return nullcontext()
    return pools.limit(limits=1, user_api="blas")


def blas_single_in(call):
    """Decorator for a method or function whose first argument is a model: its body runs under
    blas_single_while(model.n_threads)."""

    @functools.wraps(call)
    def wrapper(model, *args, **kwargs):
        n_threads = getattr(model, "n_threads", 1)
        if n_threads <= 1:  # no context to enter: short calls feel its cost
            return call(model, *args, **kwargs)
        with blas_single_while(n_threads):
            return call(model, *args, **kwargs)

    return wrapper

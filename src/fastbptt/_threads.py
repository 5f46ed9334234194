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
_blas = None


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


def _blas_libraries():
    """threadpoolctl's controller of each BLAS library (found once), or () without it."""
    global _blas
    if _blas is None:
        pools = _blas_pools()
        _blas = () if pools is None else tuple(pools.select(user_api="blas").lib_controllers)
    return _blas


class _OneBlasThread:
    """BLAS at one thread inside, each library given back its count after. A library already at
    one is left alone (a nested call, or a user's limit): a count read costs a fraction of
    threadpoolctl's `limit`, which reads every library's state and sets each one, in and out."""

    __slots__ = ("_libraries", "_given")

    def __init__(self, libraries):
        self._libraries = libraries
        self._given = ()

    def __enter__(self):
        self._given = [(lib, n) for lib in self._libraries if (n := lib.get_num_threads()) != 1]
        for lib, _ in self._given:
            lib.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        for lib, n in self._given:
            lib.set_num_threads(n)


def blas_single_while(n_threads):
    """A context in which BLAS uses one thread, when the kernels use more than one."""
    libraries = _blas_libraries() if n_threads > 1 else ()
    return _OneBlasThread(libraries) if libraries else nullcontext()


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

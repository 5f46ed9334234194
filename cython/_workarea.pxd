# Large work areas: fb_big_alloc (_alloc.h) for those of one call, and for those kept between
# calls, fastbptt._build.Area objects (owners of one fb_big_alloc) from fastbptt._kernel_args.WORK,
# a pool (a fresh area costs its page faults again at every call).
from libc.stdint cimport uintptr_t


cdef extern from "_alloc.h" nogil:
    void* big_alloc "fb_big_alloc"(size_t nbytes) noexcept


cdef inline void* area_start(object area):
    """Where an Area's memory starts (on a 64-byte boundary)."""
    return <void*> <uintptr_t> area.address


cdef inline Py_ssize_t lines_up(Py_ssize_t count, Py_ssize_t itemsize) noexcept:
    """count rounded up to whole 64-byte lines of items of this size."""
    cdef Py_ssize_t per_line = 64 // itemsize
    return (count + per_line - 1) // per_line * per_line

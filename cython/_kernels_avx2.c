/* The avx2 kernel table: compiled by setup.py with this set's flags only. */
#define FB_TABLE fb_kernels_avx2
#define FB_SET_NAME "avx2"
#include "_kernels_impl.h"

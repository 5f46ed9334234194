/* The avx512 kernel table: compiled by setup.py with this set's flags only. */
#define FB_TABLE fb_kernels_avx512
#define FB_SET_NAME "avx512"
#include "_kernels_impl.h"

/* The baseline kernel table: compiled by setup.py with this set's flags only. */
#define FB_TABLE fb_kernels_baseline
#define FB_SET_NAME "baseline"
#include "_kernels_impl.h"

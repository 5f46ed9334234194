"""Build the Cython kernels.

Compiler directives live here, not in the .pyx headers:
- FASTBPTT_CYTHON_DEBUG=1 turns bounds and initialisation checks on (slow, for debugging kernels);
- FASTBPTT_ANNOTATE=1 writes cython/*.html, the annotate view of every kernel;
- FASTBPTT_NATIVE=1 compiles the Cython modules' own loops with -march=native (for this machine only;
  the default build runs on any CPU of its architecture);
- FASTBPTT_ONLY=_lstm,_gru builds only those modules (for quick iteration on one kernel).
OpenMP is probed: used when the compiler accepts -fopenmp, left out otherwise.
"""

import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.modified import newer_group

HERE = Path(__file__).resolve().parent
DEBUG = os.environ.get("FASTBPTT_CYTHON_DEBUG") == "1"
ANNOTATE = os.environ.get("FASTBPTT_ANNOTATE") == "1"
NATIVE = os.environ.get("FASTBPTT_NATIVE") == "1"

# The vector kernels (csrc/kernel_table.c over one width-generic source) are compiled once per set with
# these flags; the module picks one at import (fastbptt._simd). x86-64 only: elsewhere the baseline.
SIMD_SETS = {
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"],
}
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}


def _modules():
    names = sorted(p.stem for p in (HERE / "cython").glob("_*.pyx"))
    only = os.environ.get("FASTBPTT_ONLY")
    if only:
        wanted = {n.strip() for n in only.split(",")} | {"_build"}
        names = [n for n in names if n in wanted]
    return names


def _extension(name):
    return Extension(
        f"fastbptt.{name}",
        [f"cython/{name}.pyx"],
        include_dirs=[numpy.get_include(), "cython"],
        depends=[str(p.relative_to(HERE)) for p in (HERE / "cython").glob("*.px[di]")]
        + [str(p.relative_to(HERE)) for p in (HERE / "cython").glob("*.[hc]")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


OPENMP_PROBE = "#include <omp.h>\nint main(void){return omp_get_max_threads() < 0;}\n"
# glibc's vector math library (libmvec): 4 doubles / 8 floats per call under AVX2
LIBMVEC_PROBE = """
#include <immintrin.h>
__m256d _ZGVdN4v_tanh(__m256d);
__m256 _ZGVdN8v_expf(__m256);
int main(void) {
    double out[4];
    _mm256_storeu_pd(out, _ZGVdN4v_tanh(_mm256_set1_pd(0.5)));
    float f[8];
    _mm256_storeu_ps(f, _ZGVdN8v_expf(_mm256_set1_ps(0.5f)));
    return !(out[0] > 0.46 && out[0] < 0.47 && f[0] > 1.64f && f[0] < 1.65f);
}
"""


class BuildExt(build_ext):
    """Probe the compiler once, then add what it accepts to every extension."""

    def _accepts(self, flags, code="int main(void){return 0;}\n", link=()):
        tmp = tempfile.mkdtemp()
        try:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(code)
            objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            self.compiler.link_executable(objs, "probe", output_dir=tmp,
                                          extra_postargs=list(flags) + list(link))
            return True
        except Exception:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def build_extensions(self):
        compile_args, link_args, macros = [], [], []
        sets = {}
        if self.compiler.compiler_type == "unix":
            compile_args += ["-O3", "-g0"] if not DEBUG else ["-O0", "-g"]
            if self._accepts(["-fno-math-errno"]):
                compile_args.append("-fno-math-errno")
            if self._accepts(["-fopenmp-simd"]):  # `omp simd` pragmas, with or without OpenMP
                compile_args.append("-fopenmp-simd")
            if self._accepts(compile_args + ["-fopenmp"], OPENMP_PROBE):
                compile_args.append("-fopenmp")
                link_args.append("-fopenmp")
                macros.append(("FASTBPTT_OPENMP", "1"))
            sets = {name: flags for name, flags in SIMD_SETS.items() if X86 and self._accepts(flags)}
            if "avx2" in sets and self._accepts(compile_args + sets["avx2"], LIBMVEC_PROBE,
                                                link=["-lmvec", "-lm"]):
                link_args += ["-lmvec", "-lm"]
                macros.append(("FASTBPTT_LIBMVEC", "1"))
        macros.append(("FASTBPTT_CFLAGS", '"' + " ".join(compile_args) + '"'))
        macros += [(f"FASTBPTT_BUILT_{name.upper()}", "1") for name in sets]
        objects = self._kernel_objects(compile_args, macros, sets)
        module_args = compile_args + (["-march=native"] if NATIVE and self._accepts(["-march=native"])
                                      else [])
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + module_args
            if ext.name.endswith("._build") and self._accepts(["-ffp-contract=off"]):
                # its bce head rounds each product as NumPy does: no fused multiply-adds
                ext.extra_compile_args.append("-ffp-contract=off")
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
            ext.define_macros = list(ext.define_macros or []) + macros + [
                ("FASTBPTT_NATIVE", "1" if NATIVE else "0")]
            ext.extra_objects = list(ext.extra_objects or []) + objects
            ext.depends = list(ext.depends or []) + objects
        super().build_extensions()

    def _kernel_objects(self, compile_args, macros, sets):
        """The kernel tables, one object per SIMD set with that set's flags, and the CPU check."""
        out = os.path.join(self.build_temp, "kernels")
        objects = []
        builds = [("baseline", "baseline", [], [])]
        for name, flags in sets.items():
            if name == "avx512":
                # the same set at 256 bits, whose sequence kernels the full table hands narrow layers
                builds.append(("avx512_narrow", name, flags, [("FB_VBYTES_MAX", "32")]))
                builds.append((name, name, flags, [("FB_NARROW_TABLE", "fb_kernels_avx512_narrow")]))
            else:
                builds.append((name, name, flags, []))
        for table_name, set_name, flags, extra in builds:
            table = [("FB_TABLE", f"fb_kernels_{table_name}"), ("FB_SET_NAME", f'"{set_name}"')]
            # one output folder per table: the same source makes an object of the same name
            objects.append(self._compiled("csrc/kernel_table.c", os.path.join(out, table_name),
                                          macros + table + extra, compile_args + flags))
        objects.append(self._compiled("csrc/cpu.c", out, macros, compile_args))
        return objects

    def _compiled(self, source, output_dir, macros, flags):
        """The object of `source`, compiled again only when a C source or header or the flags changed
        since the last build (the extensions relink when it does: it is in their depends)."""
        obj = self.compiler.object_filenames([source], output_dir=output_dir)[0]
        stamp = obj + ".flags"
        wanted = repr((macros, flags))
        inputs = [source] + [str(p) for p in (HERE / "cython").glob("*.h")]
        fresh = (not self.force and os.path.exists(stamp) and open(stamp).read() == wanted
                 and not newer_group(inputs, obj))
        if not fresh:
            self.compiler.compile([source], output_dir=output_dir, macros=macros,
                                  include_dirs=["cython"], extra_postargs=flags)
            with open(stamp, "w") as f:
                f.write(wanted)
        return obj


setup(
    ext_modules=cythonize(
        [_extension(n) for n in _modules()],
        compiler_directives=DIRECTIVES,
        annotate=ANNOTATE,
        include_path=["cython"],
    ),
    cmdclass={"build_ext": BuildExt},
)

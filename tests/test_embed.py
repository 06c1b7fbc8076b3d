"""The C core as shipped for embedding: headers, static library, pkg-config and CMake files."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dirtylog
from dirtylog import embed
from dirtylog.__main__ import main

C_PROGRAM = r"""
#include <stdio.h>
#include <dirtylog.h>

static int run_mode(uint32_t mode) {
    dl_tracker_config cfg;
    dl_tracker *t = NULL;
    dl_tracker_config_init(&cfg, 1000);
    cfg.mode = mode;
    cfg.vcpus = 2;
    if (dl_tracker_create(&cfg, &t) != DL_OK) return 1;
    if (mode == DL_MODE_PML && dl_tracker_stale_start(t, 0) != DL_OK) return 5; /* verification's bits */
    if (dl_tracker_start(t) != DL_OK) return 2;
    uint64_t pages[] = {1, 5, 5, 999, 64};
    size_t bad = 0;
    if (dl_tracker_write(t, 1, pages, 5, &bad) != DL_OK) return 3;
    uint64_t out[16];
    size_t n = 0;
    if (mode == DL_MODE_PML) {
        if (dl_tracker_stale_get(t, 0, out, 16) != DL_OK) return 6;
        printf("stale words 0 1 15: %llx %llx %llx\n", (unsigned long long)out[0], (unsigned long long)out[1],
               (unsigned long long)out[15]);
        printf("stale: initial 2: %s; words 15-16 of 16: %s\n", dl_strerror(dl_tracker_stale_start(t, 2)),
               dl_strerror(dl_tracker_stale_get(t, 15, out, 2)));
    }
    if (dl_tracker_harvest(t, out, 16, &n) != DL_OK) return 4;
    printf("mode %u harvested %zu:", (unsigned)mode, n);
    for (size_t i = 0; i < n; i++) printf(" %llu", (unsigned long long)out[i]);
    dl_tracker_stats st;
    dl_tracker_get_stats(t, &st);
    printf(" writes %llu\n", (unsigned long long)st.writes);
    uint64_t bogus = 5000;
    int rc = dl_tracker_write(t, 0, &bogus, 1, &bad);
    printf("out of range: %s\n", dl_strerror(rc));
    dl_tracker_destroy(t);
    return 0;
}

int main(void) {
    printf("version %s\n", dl_version());
    for (uint32_t mode = DL_MODE_WP; mode <= DL_MODE_RING; mode++) {
        int rc = run_mode(mode);
        if (rc) { printf("failed at step %d\n", rc); return rc; }
    }
    /* a workload run fused with a tracker (uses libm) */
    dl_tracker_config cfg;
    dl_tracker *t = NULL;
    dl_workload *w = NULL;
    dl_tracker_config_init(&cfg, 4096);
    if (dl_tracker_create(&cfg, &t) || dl_tracker_start(t)) return 10;
    if (dl_workload_create(4096, 1, 7, &w) || dl_workload_add_zipf(w, 1000.0, 1.1, NULL, 3)) return 11;
    uint64_t nw = 0;
    if (dl_workload_run(w, t, 0.0, 1.0, &nw)) return 12;
    printf("workload wrote %llu pages, %llu dirty\n", (unsigned long long)nw, (unsigned long long)dl_tracker_pending(t));
    dl_workload_destroy(w);
    dl_tracker_destroy(t);
    return 0;
}
"""


def _compiler():
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc or cc) on PATH")
    return cc


def test_installed_files_are_found():
    inc = Path(embed.get_include())
    assert (inc / "dirtylog.h").is_file()
    for h in ("common.h", "tracker.h", "workload.h", "engine.h"):
        assert (inc / "dirtylog" / h).is_file()
    assert (Path(embed.get_library_dir()) / "libdirtylog_core.a").is_file()
    assert (Path(embed.get_cmake_dir()) / "dirtylogConfig.cmake").is_file()
    assert (Path(embed.get_cmake_dir()) / "dirtylogConfigVersion.cmake").is_file()
    assert (Path(embed.get_pkgconfig_dir()) / "dirtylog.pc").is_file()
    assert dirtylog.get_include() == embed.get_include()
    assert dirtylog.get_library_dir() == embed.get_library_dir()


def test_flags_name_the_installed_folders():
    assert f"-I{embed.get_include()}" in shlex.split(embed.cflags())
    libs = shlex.split(embed.libs())
    assert f"-L{embed.get_library_dir()}" in libs
    assert "-ldirtylog_core" in libs and "-lm" in libs


def test_cli_prints_flags(capsys):
    assert main(["--cflags", "--libs"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"{embed.cflags()} {embed.libs()}"
    assert main(["--include-dir", "--library-dir"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [embed.get_include(), embed.get_library_dir()]


def test_python_m_prints_flags(tmp_path):
    # run away from the source tree: `python -m` puts the working directory first on sys.path
    r = subprocess.run([sys.executable, "-m", "dirtylog", "--cflags", "--libs"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "-ldirtylog_core" in r.stdout and "-I" in r.stdout


def test_c_program_runs_a_tracker_through_the_c_api(tmp_path):
    cc = _compiler()
    src = tmp_path / "prog.c"
    src.write_text(C_PROGRAM)
    exe = tmp_path / "prog"
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", str(src), *shlex.split(embed.cflags()),
           *shlex.split(embed.libs()), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"version {dirtylog.__version__}"
    for mode in (0, 1, 2):  # PML's with stale bits kept: its own bits co-located with them
        assert f"mode {mode} harvested 4: 1 5 64 999 writes 5" in lines
    assert "stale words 0 1 15: 22 1 8000000000" in lines  # pages 1 and 5; 64; 999 = 15 * 64 + 39
    from dirtylog._lib import ffi, lib

    invalid = ffi.string(lib.dl_strerror(lib.DL_ERR_INVALID)).decode()
    assert f"stale: initial 2: {invalid}; words 15-16 of 16: {_strerror_range()}" in lines
    assert lines.count("out of range: " + _strerror_range()) == 3
    assert lines[-1].startswith("workload wrote 1000 pages, ")


def _public_headers():
    inc = Path(embed.get_include())
    return [inc / "dirtylog.h", *sorted((inc / "dirtylog").glob("*.h"))]


@pytest.mark.parametrize("std", ["c99", "c11"])
def test_public_headers_compile_clean_with_pedantic(std, tmp_path):
    """Each installed public header, on its own, is ISO C (no extensions, no int-overflowing enumerators)."""
    cc = _compiler()
    headers = _public_headers()
    assert len(headers) >= 6
    for h in headers:
        cmd = [cc, f"-std={std}", "-pedantic", "-Werror", "-Wall", "-Wextra", "-fsyntax-only",
               f"-I{embed.get_include()}", "-x", "c", str(h)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"


def test_absent_version_is_all_ones_in_c_and_python():
    from dirtylog._lib import lib

    assert lib.DL_ABSENT == 0xFFFFFFFF


def _strerror_range() -> str:
    from dirtylog._lib import ffi, lib

    return ffi.string(lib.dl_strerror(lib.DL_ERR_RANGE)).decode()


def test_pkg_config_file_is_relocatable(tmp_path):
    pkg_config = shutil.which("pkg-config")
    if pkg_config is None:
        pytest.skip("pkg-config is not installed")
    root = tmp_path / "moved"
    shutil.copytree(Path(embed.get_include()), root / "include")
    shutil.copytree(Path(embed.get_library_dir()), root / "lib")
    env = dict(os.environ, PKG_CONFIG_PATH=str(root / "lib" / "pkgconfig"))
    env.pop("PKG_CONFIG_LIBDIR", None)
    r = subprocess.run([pkg_config, "--cflags", "--libs", "dirtylog"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    flags = shlex.split(r.stdout)
    incs = [os.path.realpath(f[2:]) for f in flags if f.startswith("-I")]
    libdirs = [os.path.realpath(f[2:]) for f in flags if f.startswith("-L")]
    assert incs == [os.path.realpath(root / "include")]
    assert libdirs == [os.path.realpath(root / "lib")]
    assert "-ldirtylog_core" in flags


def _cmake():
    exe = shutil.which("cmake")
    if exe is None:
        pytest.skip("cmake is not installed")
    try:
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        r = None
    if r is None or r.returncode != 0:
        pytest.skip("cmake does not run here")
    return exe


@pytest.mark.slow
def test_cmake_find_package_gives_dirtylog_core(tmp_path):
    cmake = _cmake()
    _compiler()
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "prog.c").write_text(C_PROGRAM)
    (proj / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\n"
        "project(embed_test LANGUAGES C)\n"
        "find_package(dirtylog 0.1 CONFIG REQUIRED)\n"
        "add_executable(prog prog.c)\n"
        "target_link_libraries(prog PRIVATE dirtylog::core)\n"
    )
    root = str(Path(embed.get_cmake_dir()).parents[2])  # what the cmake.root entry point gives
    build = tmp_path / "build"
    r = subprocess.run([cmake, "-S", str(proj), "-B", str(build), f"-Ddirtylog_ROOT={root}",
                        "-DCMAKE_BUILD_TYPE=Release"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([cmake, "--build", str(build)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    exes = [p for p in build.rglob("prog") if p.is_file() and os.access(p, os.X_OK)]
    assert exes
    r = subprocess.run([str(exes[0])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mode 2 harvested 4: 1 5 64 999 writes 5" in r.stdout


def test_cmake_root_entry_point_names_the_package():
    from importlib.metadata import entry_points

    if sys.version_info >= (3, 10):
        group = entry_points(group="cmake.root")
    else:  # Python 3.9: a dict of groups
        group = entry_points().get("cmake.root", [])
    names = {ep.name: ep.value for ep in group}
    assert names.get("dirtylog") == "dirtylog"


def test_every_c_function_refuses_a_null_handle():
    """The C API validates at its boundary: every function that takes an engine, tracker or workload
    handle, given NULL for it (and for every other pointer, zero for every number), returns
    DL_ERR_INVALID (a count, a size or a predicate: 0; a destroy: nothing), and none crashes. The functions are
    the library's own list, so one added later is checked too (the engine's had no such test)."""
    from dirtylog._lib import ffi, lib

    handles = ("struct dl_engine *", "struct dl_tracker *", "struct dl_workload *")
    checked = []
    for name in sorted(n for n in dir(lib) if n.startswith("dl_")):
        fn = getattr(lib, name)
        try:
            t = ffi.typeof(fn)
        except TypeError:  # a constant, not a function
            continue
        if not t.args or t.args[0].cname not in handles:
            continue
        rc = fn(*[ffi.NULL if a.kind == "pointer" else 0 for a in t.args])
        if t.result.cname == "int" and "_is_" not in name:
            assert rc == lib.DL_ERR_INVALID, name
        elif t.result.cname != "void":
            assert rc == 0, name
        checked.append(name)
    assert {"dl_engine_dirty_harvest", "dl_tracker_flush", "dl_workload_add_zipf"} <= set(checked)
    assert len(checked) > 60


def test_the_guides_c_example_builds_and_runs_as_written(tmp_path):
    """docs/embedding-guide.rst's minimal C program, taken from the page, built with the documented
    command line (python -m dirtylog --cflags --libs) and run: it prints what its comments say."""
    guide = Path(__file__).resolve().parent.parent / "docs" / "embedding-guide.rst"
    if not guide.is_file():
        pytest.skip(f"{guide} is not here (the docs are in the source tree)")
    text = guide.read_text()
    start = text.index(".. code:: c\n")
    block = []
    for line in text[start:].splitlines()[2:]:
        if line and not line.startswith("   "):
            break
        block.append(line[3:])
    src = tmp_path / "my_sim.c"
    src.write_text("\n".join(block).strip() + "\n")
    flags = subprocess.run([sys.executable, "-m", "dirtylog", "--cflags", "--libs"], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path).stdout.split()
    exe = tmp_path / "my_sim"
    r = subprocess.run([_compiler(), "-Wall", "-Wextra", "-Werror", str(src), *flags, "-o", str(exe)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "harvested 3: 5 9 70000\ninvalid argument\n"), r.stderr

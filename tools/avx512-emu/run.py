#!/usr/bin/env python3
"""Runs the AVX-512 kernels of `crates/deberta-kernels/src/avx512.rs` under an emulated CPU and
checks them against their portable twins (see README.md).

Usage: python run.py [--binary PATH]
Runs three emulations: Sapphire Rapids (f32, bf16 and int8 kernels), Ice Lake (f32 and int8),
and Ice Lake asked for the bf16 kernel, which must stop on an invalid-opcode fault (proof that the emulator
checks the instructions the kernels use). Exit status 0 when all three behave.
"""
import argparse
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Bochs' cpudb index of each model (bochscpu's own default is Cannon Lake: AVX-512 without
# VNNI or BF16).
MODELS = {"icelake": 28, "sapphire_rapids": 30}
# `run`'s mode: bit 0 checks the bf16 kernel, bit 1 the int8 one, bit 2 the f32 one.
BF16, INT8, F32 = 1, 2, 4
INVALID_OPCODE, GENERAL_PROTECTION = 6, 13
SENTINEL = 0x7000_0000
STACK_TOP = 0x6000_0000
STACK_SIZE = 1 << 20


def load_segments(path):
    """(vaddr, file bytes, memsz) of each PT_LOAD segment of a 64-bit little-endian ELF."""
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path}: not a 64-bit ELF"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments = []
    for i in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz, memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            segments.append((vaddr, data[offset:offset + filesz], memsz))
    return segments


def symbol(path, name):
    out = subprocess.run(["nm", path], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise SystemExit(f"{path}: no symbol {name}")


def emulate(binary, mode):
    import bochscpu
    import bochscpu.cpu
    import bochscpu.memory

    page = bochscpu.memory.page_size()
    sess = bochscpu.Session()

    def missing(gpa):
        raise RuntimeError(f"missing guest page {gpa:#x}")

    sess.missing_page_handler = missing
    table = bochscpu.memory.PageMapLevel4Table()
    next_pa = [0x1000_0000]

    def map_range(va, size, kind):
        for v in range(va & ~(page - 1), va + size, page):
            if table.translate(v) is not None:
                continue
            bochscpu.memory.page_insert(next_pa[0], bochscpu.memory.allocate_host_page())
            table.insert(v, next_pa[0], kind)
            next_pa[0] += page

    code, rw = 0, 1
    segments = load_segments(binary)
    for vaddr, _, memsz in segments:
        map_range(vaddr, memsz, rw)
    map_range(STACK_TOP - STACK_SIZE, STACK_SIZE, rw)
    map_range(SENTINEL, page, code)
    pml4 = 0x10_0000
    for hva, gpa in table.commit(pml4):
        bochscpu.memory.page_insert(gpa, hva)

    def write(va, blob):
        done = 0
        while done < len(blob):
            n = min(len(blob) - done, page - (va + done) % page)
            assert bochscpu.memory.virt_write(pml4, va + done, list(blob[done:done + n]))
            done += n

    def read(va, size):
        return bytes(bochscpu.memory.virt_read(pml4, va, size))

    for vaddr, blob, memsz in segments:
        write(vaddr, blob + bytes(memsz - len(blob)))
    write(SENTINEL, b"\xf4")  # hlt: #GP at CPL 3, which ends the run
    rsp = STACK_TOP - 64
    write(rsp, struct.pack("<Q", SENTINEL))

    state = bochscpu.State()
    bochscpu.cpu.set_long_mode(state)
    state.cr3 = pml4
    state.cr4 = state.cr4 | (1 << 9) | (1 << 10) | (1 << 18)  # OSFXSR, OSXMMEXCPT, OSXSAVE
    state.xcr0 = 0xE7  # x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
    state.mxcsr = 0x1F80
    state.rip = symbol(binary, "run")
    state.rsp = rsp
    state.rdi = mode
    cs = bochscpu.Segment()
    cs.present, cs.selector, cs.base, cs.limit, cs.attr = True, 0x33, 0, 0xFFFF_FFFF, 0x22FB
    ds = bochscpu.Segment()
    ds.present, ds.selector, ds.base, ds.limit, ds.attr = True, 0x2B, 0, 0xFFFF_FFFF, 0xCF3
    state.cs, state.ds, state.ss, state.es, state.fs, state.gs = cs, ds, ds, ds, ds, ds
    sess.cpu.state = state

    stop = {}
    hook = bochscpu.Hook()

    def on_exception(s, _cpu, vector, error):
        stop.update(vector=vector, error=error, rip=s.cpu.rip)
        s.stop()

    hook.exception = on_exception
    sess.run([hook])
    final = sess.cpu.state
    magic, cases, bf16_bad, int8_bad, f32_bad, first_bad, s0, s1 = struct.unpack(
        "<8Q", read(symbol(binary, "REPORT"), 64))
    return stop, final.rax, magic, cases, (f32_bad, bf16_bad, int8_bad), first_bad, (s0, s1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(HERE, "target/release/avx512-emu"))
    parser.add_argument("--child", choices=sorted(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expect-invalid-opcode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    runs = [
        ("sapphire_rapids", F32 | BF16 | INT8, False),
        ("icelake", F32 | INT8, False),
        ("icelake", BF16, True),
    ]
    failed = [run for run in runs if respawn(args.binary, *run) != 0]
    return 1 if failed else 0


def child(args):
    stop, rax, magic, cases, (f32_bad, bf16_bad, int8_bad), first_bad, sample = emulate(
        args.binary, args.mode)
    finished = stop.get("rip") in (SENTINEL, SENTINEL + 1) and \
        stop.get("vector") == GENERAL_PROTECTION
    what = ", ".join(n for n, bit in (("f32", F32), ("bf16", BF16), ("int8", INT8))
                     if args.mode & bit)
    if args.expect_invalid_opcode:
        ok = stop.get("vector") == INVALID_OPCODE
        print(f"{args.child}, {what} kernel: {'stopped on #UD, as it must' if ok else f'no #UD: {stop}'}")
        return 0 if ok else 1
    if not finished or magic != 0xA5A5_0512:
        print(f"{args.child}: the run did not finish: stopped at {stop}, magic {magic:#x}")
        return 2
    print(f"{args.child}, {what} kernels: {cases} cases (1-12 rows x 9 group counts), "
          f"mismatches: f32 {f32_bad}, bf16 {bf16_bad}, int8 {int8_bad}; "
          f"sample sums {sample[0]:#018x} {sample[1]:#x}")
    if rax != 0:
        print(f"MISMATCH: first at rows={first_bad >> 32} groups={first_bad & 0xffffffff}")
        return 1
    return 0


def respawn(binary, model, mode, expect_invalid_opcode):
    """Runs one emulation in a child process with the two shims preloaded (they must be in
    place before the `bochscpu` module loads, and Bochs' CPU model is fixed per process)."""
    import importlib.util
    spec = importlib.util.find_spec("bochscpu")
    if spec is None:
        raise SystemExit("needs the bochscpu Python package: pip install bochscpu-python==0.4.0")
    where = spec.submodule_search_locations[0]
    so = [os.path.join(where, f) for f in os.listdir(where)
          if f.startswith("_bochscpu") and f.endswith(".so")][0]
    build = os.path.join(HERE, "target", "shims")
    os.makedirs(build, exist_ok=True)
    libs = []
    for name in ("glibc_isoc23", "bochs_model"):
        lib = os.path.join(build, f"lib{name}.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", lib,
                        os.path.join(HERE, f"{name}.c"), "-ldl"], check=True)
        libs.append(lib)
    env = dict(os.environ, LD_PRELOAD=" ".join(libs), BOCHS_SO=so,
               BOCHS_MODEL_IDX=str(MODELS[model]))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", model, "--mode", str(mode),
           "--binary", binary]
    if expect_invalid_opcode:
        cmd.append("--expect-invalid-opcode")
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Clears the executable flag of the PT_GNU_STACK program header in 64-bit little-endian ELF files.

Usage: clear-execstack.py FILE...   Prints each file it changed. Exits 1 on a file that is not such an ELF.
(patchelf gained --clear-execstack only in 0.18; Debian 12 has 0.14.)
"""
import struct
import sys

PT_GNU_STACK = 0x6474E551
PF_X = 0x1


def clear(path: str) -> bool:
    with open(path, "r+b") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
        f.seek(0x20)
        (phoff,) = struct.unpack("<Q", f.read(8))
        f.seek(0x36)
        phentsize, phnum = struct.unpack("<HH", f.read(4))
        for i in range(phnum):
            entry = phoff + i * phentsize
            f.seek(entry)
            p_type, p_flags = struct.unpack("<II", f.read(8))
            if p_type == PT_GNU_STACK and p_flags & PF_X:
                f.seek(entry + 4)
                f.write(struct.pack("<I", p_flags & ~PF_X))
                return True
    return False


def main() -> int:
    status = 0
    for path in sys.argv[1:]:
        try:
            if clear(path):
                print(f"cleared executable stack: {path}")
        except (OSError, ValueError) as error:
            print(f"clear-execstack: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

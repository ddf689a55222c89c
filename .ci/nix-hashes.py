#!/usr/bin/env python3
"""Fail on placeholder hashes in the Nix tree (issue #22).

A placeholder hash makes a fixed-output derivation fail on the first machine
that builds it, and nothing here can build, so look for them instead:

  * nixpkgs' placeholders by name: lib.fakeHash, lib.fakeSha256,
    lib.fakeSha512, or any other `lib.fake*` / bare `fakeHash`-style name;
  * an SRI hash (sha1-/sha256-/sha512-...) whose bytes are all zero;
  * a run of 32 or more `0` characters (all-zero hex or Nix base-32 hash).

Scans every tracked or new *.nix file and flake.lock (or the files given).
`--self-test` runs the scanner on a file holding each placeholder form and
fails unless every one of them is reported (the negative control).
"""
import base64
import binascii
import os
import re
import subprocess
import sys
import tempfile

FAKE_NAME = re.compile(r"\blib\.fake\w*|\bfake(?:Hash|Sha1|Sha256|Sha512)\b")
SRI = re.compile(r"\b(sha1|sha256|sha512)-([A-Za-z0-9+/]+=*)")
SRI_BYTES = {"sha1": 20, "sha256": 32, "sha512": 64}
ZERO_RUN = re.compile(r"(?<![0-9A-Za-z])0{32,}(?![0-9A-Za-z])")


def problems(path):
    found = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            for m in FAKE_NAME.finditer(line):
                found.append(f"{where}: placeholder {m.group(0)}")
            for m in SRI.finditer(line):
                algo, b64 = m.groups()
                try:
                    raw = base64.b64decode(b64, validate=True)
                except (binascii.Error, ValueError):
                    continue
                if len(raw) == SRI_BYTES[algo] and not any(raw):
                    found.append(f"{where}: all-zero {algo} hash {m.group(0)}")
            for m in ZERO_RUN.finditer(line):
                found.append(f"{where}: all-zero hash {m.group(0)[:12]}...")
    return found


def nix_tree():
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.nix", "flake.lock"],
        check=True, capture_output=True, text=True).stdout
    return [p for p in out.splitlines() if os.path.exists(p)]


def self_test():
    bad = {
        "lib.fakeHash": 'hash = lib.fakeHash;',
        "lib.fakeSha256": 'sha256 = lib.fakeSha256;',
        "pkgs.lib.fakeSha512": 'hash = pkgs.lib.fakeSha512;',
        "inherited fakeHash": 'inherit (lib) fakeHash;',
        "zero SRI sha256": 'hash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";',
        "zero base-32": 'sha256 = "' + "0" * 52 + '";',
        "zero hex": 'outputHash = "' + "0" * 64 + '";',
    }
    good = 'hash = "sha256-4GmJUBRaRtSSqfxQBtmrDnlYOEarmdaH66Bsr6d8Oxs="; rev = "2c2b04e76bccdbdb2c73b6892427aa46cf2151d4";'
    rc = 0
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("a real hash", good, False)] + [(name, line, True) for name, line in bad.items()]
        for i, (name, line, is_bad) in enumerate(cases):
            path = os.path.join(tmp, f"case{i}.nix")
            with open(path, "w", encoding="utf-8") as f:
                f.write(line + "\n")
            reported = bool(problems(path))
            if reported == is_bad:
                print(f"self-test: {name} is {'reported' if is_bad else 'accepted'}, as it must be")
            else:
                print(f"self-test: {name} is {'NOT reported' if is_bad else 'reported'}")
                rc = 1
    return rc


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    files = argv[1:] or nix_tree()
    found = [p for path in files for p in problems(path)]
    for p in found:
        print(p)
    if found:
        return 1
    print(f"no placeholder hash in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

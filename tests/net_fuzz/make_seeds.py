#!/usr/bin/env python3
"""Writes the fuzz seed corpus from the captured vectors: make_seeds.py VECTORS_DIR OUT_DIR.
Mode byte 0 + every pickle of pickle-samples.tsv and frames.tsv; 1 + every captured stream
(both directions); 2 + every server->client stream (what a client authenticates over)."""
import pathlib
import sys

vectors, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
seeds = set()
for line in (vectors / "pickle-samples.tsv").read_text().splitlines()[1:]:
    seeds.add(b"\x00" + bytes.fromhex(line.split("\t")[3]))
for frames in vectors.glob("*/frames.tsv"):
    for line in frames.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if cols[3] == "pickle":
            seeds.add(b"\x00" + bytes.fromhex(cols[5]))
for stream in vectors.glob("*/c*.hex"):
    raw = bytes.fromhex("".join(stream.read_text().split()))
    seeds.add(b"\x01" + raw)
    if ".s2c." in stream.name:
        seeds.add(b"\x02" + raw)
for i, seed in enumerate(sorted(seeds)):
    (out / f"seed-{i:04d}").write_bytes(seed)
print(f"{len(seeds)} seeds in {out}")

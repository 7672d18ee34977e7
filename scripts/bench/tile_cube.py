"""Tile an ENVI BIL cube T x T times into a bigger one (a benchmark input, not a test fixture).

    python3 scripts/bench/tile_cube.py IN.hdr OUT.hdr T
"""
import re
import sys

src, dst, t = sys.argv[1], sys.argv[2], int(sys.argv[3])
header = open(src).read()
value = lambda key: int(re.search(rf"^{key}\s*=\s*(\d+)", header, re.M).group(1))
samples, lines, bands = value("samples"), value("lines"), value("bands")
assert re.search(r"^interleave\s*=\s*bil", header, re.M | re.I), "BIL cubes only"
assert value("data type") == 12, "uint16 cubes only"
data = open(src[:-4] + ".img", "rb").read()
chunk = samples * 2
with open(dst[:-4] + ".img", "wb") as out:
    for line in range(lines * t):
        base = (line % lines) * bands * chunk
        for band in range(bands):
            out.write(data[base + band * chunk: base + (band + 1) * chunk] * t)
header = re.sub(r"^samples\s*=.*$", f"samples = {samples * t}", header, flags=re.M)
header = re.sub(r"^lines\s*=.*$", f"lines = {lines * t}", header, flags=re.M)
open(dst, "w").write(header)

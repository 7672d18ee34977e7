"""How many per-pixel calls would change if the encoder's matrix products ran in bfloat16 (inputs
and weights rounded to bf16, products exact, sums in f32: what AMX's TDPBF16PS computes, up to its
summation order) instead of f32, for a model and the plant pixels of a cube.

    python scripts/bench/bf16_calls.py MODEL.safetensors CUBE.hdr [NDVI_THRESHOLD]

The cube: ENVI, BIL, unsigned 16-bit little-endian (scripts/bench-run's cubes); every 23rd line
is read; plant pixels are those with NDVI (670 / 800 nm) above NDVI_THRESHOLD (default 0.4766,
the Otsu threshold `pipeline run` logs for the bench cubes). Both precisions use the same 12
draws of eps (not the pipeline's table: the question is how far the precision moves a call, not
the calls themselves), average the softmax over them and the members, and temper by the model's
temperature. Prints the share of calls that differ and how far probabilities and KL move.
"""
import json
import struct
import sys

import numpy as np


def header(path):
    text = open(path).read()
    keys = {}
    for key in ("samples", "lines", "bands", "data type", "interleave", "byte order",
                "reflectance scale factor"):
        for line in text.splitlines():
            if line.split("=")[0].strip().lower() == key:
                keys[key] = line.split("=", 1)[1].strip()
    wavelengths = [float(w) for w in text.split("wavelength = {")[1].split("}")[0].split(",")]
    if (keys.get("data type"), keys.get("interleave"), keys.get("byte order")) != ("12", "bil", "0"):
        sys.exit(f"{path}: this script reads unsigned 16-bit little-endian BIL cubes only")
    return keys, np.array(wavelengths)


def bf16(a):
    """Round f32 values to the nearest bfloat16 (ties to even), kept as f32."""
    bits = np.ascontiguousarray(a, "f4").view("u4").astype("u8")
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype("u4").view("f4")


def main():
    model_path, cube_path = sys.argv[1], sys.argv[2]
    threshold = float(sys.argv[3]) if len(sys.argv) > 3 else 0.4766
    f = open(model_path, "rb")
    size = struct.unpack("<Q", f.read(8))[0]
    head = json.loads(f.read(size))
    card = json.loads(head["__metadata__"]["pipeline.model"])
    arch = card["architecture"]
    if arch.get("encoder", "mlp") != "mlp" or arch.get("deterministic") or "target" in card:
        sys.exit("this script runs MLP classifiers with a stochastic bottleneck only")

    def tensor(name):
        spec = head[name]
        start, end = spec["data_offsets"]
        f.seek(8 + size + start)
        return np.frombuffer(f.read(end - start), dtype="<f4").reshape(spec["shape"])

    keys, wavelengths = header(cube_path)
    lines, samples, bands = (int(keys[k]) for k in ("lines", "samples", "bands"))
    if bands != arch["input_dim"]:
        sys.exit(f"the cube has {bands} bands, the model {arch['input_dim']}")
    scale = float(keys.get("reflectance scale factor", 1))
    cube = np.memmap(cube_path.rsplit(".", 1)[0] + ".img", dtype="<u2", mode="r",
                     shape=(lines, bands, samples))
    pixels = (cube[::23].astype("f4") / scale).transpose(0, 2, 1).reshape(-1, bands)
    red, nir = np.argmin(abs(wavelengths - 670)), np.argmin(abs(wavelengths - 800))
    ndvi = (pixels[:, nir] - pixels[:, red]) / (pixels[:, nir] + pixels[:, red] + 1e-9)
    x = (pixels[ndvi > threshold] - np.array(card["input_mean"], "f4")) / np.array(
        card["input_std"], "f4")
    latent = arch["latent_dim"]
    eps = np.random.default_rng(0).standard_normal((12, latent)).astype("f4")
    temperature = (card.get("calibration") or {}).get("temperature", 1.0)

    def dense(h, w, b, precision, relu):
        if precision == "bf16":
            h, w = bf16(h), bf16(w)
        # Products exact in f64, one rounding to f32 (either precision: the summation order is
        # not what this measures).
        y = (h.astype("f8") @ w.T.astype("f8")).astype("f4") + b
        return np.maximum(y, 0) if relu else y

    results = {}
    for precision in ("f32", "bf16"):
        probabilities, kl = 0, 0
        for m in range(card["members"]):
            def t(name):
                return tensor(f"member{m}.{name}")
            h = x
            for i in range(len(arch["hidden_dims"])):
                h = dense(h, t(f"encoder{i}.weight"), t(f"encoder{i}.bias"), precision, True)
            out = dense(h, t("mu_logvar.weight"), t("mu_logvar.bias"), precision, False)
            mu, logvar = out[:, :latent], np.clip(out[:, latent:], -12, 8)
            kl = kl + 0.5 * (mu.astype("f8") ** 2 + np.exp(logvar.astype("f8")) - logvar - 1).sum(1)
            z = mu[:, None, :] + np.exp(0.5 * logvar)[:, None, :] * eps[None]
            logits = z @ t("classifier.weight").T + t("classifier.bias")
            e = np.exp(logits - logits.max(-1, keepdims=True))
            probabilities = probabilities + (e / e.sum(-1, keepdims=True)).mean(1)
        logs = np.log(np.maximum(probabilities / card["members"], 1e-30)) / temperature
        p = np.exp(logs - logs.max(1, keepdims=True))
        results[precision] = (p / p.sum(1, keepdims=True), kl / card["members"])
    (p32, kl32), (p16, kl16) = results["f32"], results["bf16"]
    changed = p32.argmax(1) != p16.argmax(1)
    print(f"plant pixels {len(x)} (every 23rd line, NDVI > {threshold})")
    print(f"calls changed: {changed.sum()} ({100 * changed.mean():.3f}%)")
    print(f"|p_bf16 - p_f32|: median {np.median(abs(p32 - p16)):.1e}, max {abs(p32 - p16).max():.1e}")
    relative = abs(kl32 - kl16) / np.maximum(kl32, 1e-9)
    print(f"KL relative change: median {np.median(relative):.1e}, "
          f"99th percentile {np.percentile(relative, 99):.1e}, max {relative.max():.1e}")
    top = np.sort(p32, 1)
    print(f"f32 calls whose top two probabilities are within 0.01: "
          f"{100 * (top[:, -1] - top[:, -2] < 0.01).mean():.2f}%")


if __name__ == "__main__":
    main()

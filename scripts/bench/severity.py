"""Severity benchmark on the synthetic lesion fields (not a test): a per-pixel model trained on
lesions-a's per-pixel truth, `run --per-pixel` on lesions-b with its plant-id raster, scored
against lesions-b's truth table and per-pixel truth, for several --pixel-erosion-px values.

    python scripts/bench/severity.py PIPELINE_BINARY WORK_DIR

Prints per erosion: per-plant severity MAE and bias (points of %), mean severity of the healthy
plants (edge inflation), lesion-pixel F1 on the scored pixels, the pixel-vote and mean-spectrum
plant-call accuracies. Environment: TRAIN_ARGS (extra `pipeline train` options), EROSIONS
(comma-separated, default 0,1,2), MODEL (use this model instead of training one).
"""
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

binary, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
cubes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../sample_cubes")
c = lambda name: os.path.join(cubes, name)


def run(*args):
    subprocess.run([binary, "-q", *args], check=True, stdout=subprocess.DEVNULL)


model = os.environ.get("MODEL")
if not model:
    model = os.path.join(work, "lesion-model.safetensors")
    if not os.path.exists(model):
        run("train", "--cube", c("lesions-a.hdr"), "--labels", c("lesions-a-pixel-truth.hdr"),
            "--seed", "0", "--out", model, *os.environ.get("TRAIN_ARGS", "").split())


def envi_labels(base):
    header = open(base + ".hdr").read()
    key = lambda k: int(re.search(rf"^{k}\s*=\s*(\d+)", header, re.M).group(1))
    dtype = {1: np.uint8, 12: np.dtype("<u2")}[key("data type")]
    lines, samples = key("lines"), key("samples")
    return np.fromfile(base + ".img", dtype=dtype).reshape(lines, samples)


truth = {int(r["plant_id"]): r for r in csv.DictReader(open(c("lesions-b-truth.csv")))}
pixel_truth = envi_labels(c("lesions-b-pixel-truth"))
results = {}
for erosion in [int(e) for e in os.environ.get("EROSIONS", "0,1,2").split(",")]:
    out = os.path.join(work, f"erosion{erosion}.parquet")
    tif = os.path.join(work, f"erosion{erosion}.tif")
    run("run", "--cube", c("lesions-b.hdr"), "--model", model, "--plant-ids", c("lesions-b-plant-ids.tif"),
        "--per-pixel", "--pixel-erosion-px", str(erosion), "--pixel-class-map", tif, "--out", out, "--overwrite")
    rows = {r["plant_id"]: r for r in pq.read_table(out).to_pylist()}
    err = [rows[i]["severity_pct"] - float(t["severity_pct"]) for i, t in truth.items()]
    healthy = [rows[i]["severity_pct"] for i, t in truth.items() if t["class"] == "healthy"]
    vote = np.mean([rows[i]["pixel_vote_class_name"] == t["class"] for i, t in truth.items()])
    plant = np.mean([rows[i]["predicted_class_name"] == t["class"] for i, t in truth.items()])
    raw = os.path.join(work, f"erosion{erosion}-map")
    subprocess.run(["gdal_translate", "-q", "-of", "ENVI", tif, raw + ".img"], check=True)
    predicted = envi_labels(raw)
    scored = (predicted > 0) & (pixel_truth > 0)
    p, t = predicted[scored] > 1, pixel_truth[scored] > 1
    tp, fp, fn = np.sum(p & t), np.sum(p & ~t), np.sum(~p & t)
    results[erosion] = {
        "severity_mae_pts": float(np.mean(np.abs(err))),
        "severity_bias_pts": float(np.mean(err)),
        "healthy_plants_mean_severity_pct": float(np.mean(healthy)),
        "lesion_pixel_f1": float(2 * tp / (2 * tp + fp + fn)),
        "scored_pixels": int(scored.sum()),
        "pixel_vote_accuracy": float(vote),
        "mean_spectrum_call_accuracy": float(plant),
    }
    r = results[erosion]
    print(f"erosion {erosion}: severity MAE {r['severity_mae_pts']:.2f} pts (bias {r['severity_bias_pts']:+.2f}), "
          f"healthy plants {r['healthy_plants_mean_severity_pct']:.2f}%, lesion-pixel F1 {r['lesion_pixel_f1']:.4f} "
          f"on {r['scored_pixels']} px, plant calls: pixel vote {r['pixel_vote_accuracy']:.3f}, "
          f"mean spectrum {r['mean_spectrum_call_accuracy']:.3f}")
json.dump(results, open(os.path.join(work, "severity.json"), "w"), indent=2)

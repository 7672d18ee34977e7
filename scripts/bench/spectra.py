"""The spectra the benchmarks share, read in place: the REAL peanut stem-rot leaf spectra of
../shared/real_spectra (Wei et al. 2021, Remote Sensing 13, 2833; never copied) and the bundled
canopy library (PROSPECT-D + 4SAIL) every 10 nm with noise 0.005."""
import csv
import os
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def peanut():
    path = os.path.join(here, "../../../shared/real_spectra/peanut_stem_rot/peanut_stem_rot_gh2019.csv")
    if not os.path.exists(path):
        sys.exit(f"{path}: the shared peanut spectra are missing (../shared beside the checkout)")
    with open(path) as f:
        rows = list(csv.reader(f))
    wavelengths = [float(w) for w in rows[0][1:]]
    labels = np.array([r[0] for r in rows[1:]])
    x = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    return wavelengths, x, labels


def canopy():
    library = os.path.join(here, "../../crates/synth/library")
    lines, bands = 1200, 2101
    cube = np.fromfile(os.path.join(library, "canopy.img"), dtype="<f4").reshape(bands, lines).T
    meta = list(csv.DictReader(open(os.path.join(library, "canopy.csv"))))
    labels = np.array([m["label"] for m in meta])
    severity = np.array([float(m["severity"]) for m in meta])
    step = np.arange(0, bands, 10)
    rng = np.random.default_rng(0)
    x = cube[:, step] + rng.normal(0, 0.005, size=(lines, len(step)))
    return [float(w) for w in 400 + step], x, labels, severity

"""The VIB of crates/model in PyTorch from Python: same network, same training loop (minibatch Adam,
cosine learning rate, gradient clipping, per-batch loss readout), same inference (12 samples of z,
batches of 4096). Prints one JSON line like crates/model/examples/throughput.rs.

Usage: python vib_pytorch.py THREADS [SAMPLES] [EPOCHS]
"""
import json
import math
import sys
import time

import torch
from torch import nn

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
bands, latent, classes, batch = 200, 32, 3, 64
torch.set_num_threads(threads)
torch.manual_seed(0)

state = 42
def uniform():
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return (state >> 11) / float(1 << 53)

x = torch.empty(n, bands)
y = torch.empty(n, dtype=torch.long)
for i in range(n):
    c = i % 3
    for b in range(bands):
        t = b / bands
        shape = (t, 1 - t, math.sin(6 * t) * 0.5 + 0.5)[c]
        x[i, b] = 0.2 + 0.5 * shape + 0.1 * (uniform() - 0.5)
    y[i] = c
mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
raw = x
x = (x - mean) / std


class Vib(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(bands, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
        self.head = nn.Linear(128, 2 * latent)
        self.classifier = nn.Linear(latent, classes)

    def encode(self, x):
        out = self.head(self.encoder(x))
        return out[:, :latent], out[:, latent:].clamp(-12.0, 8.0)


model = Vib()
optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
beta = 1e-3
stamps = []
for epoch in range(epochs):
    progress = epoch / max(epochs, 2)
    for group in optimiser.param_groups:
        group["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
    order = torch.randperm(n)
    loss_sum = ce_sum = kl_sum = 0.0
    correct = 0
    for start in range(0, n, batch):
        idx = order[start:start + batch]
        xb, yb = x[idx], y[idx]
        mu, logvar = model.encode(xb)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        logits = model.classifier(z)
        ce = nn.functional.cross_entropy(logits, yb)
        kl = (0.5 * (mu.square() + logvar.exp() - logvar - 1)).sum(1).mean()
        loss = ce + beta * kl
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        loss_sum += loss.item() * len(idx)
        ce_sum += ce.item() * len(idx)
        kl_sum += kl.item() * len(idx)
        correct += (logits.argmax(-1) == yb).sum().item()
    stamps.append(time.perf_counter())
train_rate = (epochs - 1) * n / (stamps[-1] - stamps[0])


@torch.no_grad()
def predict(raw):
    """Standardise, encode, average the softmax over 12 samples of z; per spectrum the
    probabilities, KL and entropy as Python lists (what the Rust side hands back)."""
    out = []
    for start in range(0, len(raw), 4096):
        mu, logvar = model.encode((raw[start:start + 4096] - mean) / std)
        kl = (0.5 * (mu.square() + logvar.exp() - logvar - 1)).sum(1)
        total = torch.zeros(len(mu), classes)
        for _ in range(12):
            total += model.classifier(mu + (0.5 * logvar).exp() * torch.randn_like(mu)).softmax(-1)
        p = total / 12
        entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
        out.extend(zip(p.tolist(), kl.tolist(), entropy.tolist()))
    return out


predict(raw[:4096])
start = time.perf_counter()
for _ in range(3):
    predict(raw)
infer_rate = 3 * n / (time.perf_counter() - start)
print(json.dumps({"implementation": "python-pytorch", "threads": threads, "samples": n,
                  "train_samples_per_s": round(train_rate, 1), "inference_spectra_per_s": round(infer_rate, 1),
                  "torch": torch.__version__}))

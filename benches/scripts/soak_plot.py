"""The soak's plot and table: `python3 soak_plot.py soak.csv soak.png`.

Four panels against time (resident memory, open file descriptors, database size, the trigger
endpoint's p99), one line per server; then, per server, the first sample after the warm-up
(the first 10 % of the run, at least 2 minutes) against the last, and the answers by class.
"""

import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

path, image = sys.argv[1], sys.argv[2]
rows = defaultdict(list)
with open(path, newline="") as file:
    for row in csv.DictReader(file):
        rows[row["target"]].append(row)

panels = [
    ("rss_kib", "resident memory (MiB)", 1 / 1024),
    ("fds", "open file descriptors", 1),
    ("db_bytes", "database size (MiB)", 1 / 1024 / 1024),
    ("p99_ms", "p99 of the trigger endpoint (ms)", 1),
]
figure, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
for axis, (column, title, scale) in zip(axes.flat, panels):
    for target, samples in rows.items():
        minutes = [int(sample["elapsed_s"]) / 60 for sample in samples]
        axis.plot(minutes, [float(sample[column]) * scale for sample in samples], label=target)
    axis.set_title(title)
    axis.set_xlabel("minutes")
    axis.grid(alpha=0.3)
axes.flat[0].legend()
figure.tight_layout()
figure.savefig(image, dpi=100)

print(
    "| server | minutes | RSS MiB (after warm-up → end) | fds | database MiB | p99 ms (median of samples) "
    "| requests | 2xx | 503 | 4xx | 5xx | no answer |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for target, samples in rows.items():
    end = int(samples[-1]["elapsed_s"])
    warm = next(
        (s for s in samples if int(s["elapsed_s"]) >= max(120, end // 10)), samples[0]
    )
    last = samples[-1]
    p99s = sorted(float(s["p99_ms"]) for s in samples)
    total = {
        key: sum(int(s[key]) for s in samples)
        for key in ("requests", "ok", "unavailable", "client_errors", "server_errors", "transport_errors")
    }
    print(
        f"| {target} | {end / 60:.0f} "
        f"| {int(warm['rss_kib']) / 1024:.1f} → {int(last['rss_kib']) / 1024:.1f} "
        f"| {warm['fds']} → {last['fds']} "
        f"| {int(warm['db_bytes']) / 2**20:.1f} → {int(last['db_bytes']) / 2**20:.1f} "
        f"| {p99s[len(p99s) // 2]:.1f} "
        f"| {total['requests']} | {total['ok']} | {total['unavailable']} | {total['client_errors']} "
        f"| {total['server_errors']} | {total['transport_errors']} |"
    )

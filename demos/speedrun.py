#!/usr/bin/python3
"""demos/speedrun.c's recipe in PyTorch (Debian's python3-torch), for the README's comparison.

Usage: python3 demos/speedrun.py [--data DIR] [--threads N] [--channels-last] [--bf16] [--seed N]

The same data, net, initialisation rule, optimizer, schedule and evaluation as speedrun.c
(its comment is the recipe);
PyTorch set up at its fastest on a CPU: its own OpenMP threads (--threads), the BLAS under it
kept to one thread, the whole training set as one tensor (no DataLoader), optionally oneDNN's
channels_last layout, optionally bf16 autocast (--bf16: torch.autocast on the CPU, what
speedrun.c's --precision medium compares with). Prints the time to 99% from the start (data
loading included) and ends with "test accuracy: NN.NN%". Install libopenblas0-pthread first:
on Debian's reference BLAS PyTorch trains slower.
"""
import os
import time

T0 = time.perf_counter()
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import argparse  # noqa: E402
import struct  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

C1, C2, C3, BATCH, LR = 16, 32, 64, 128, 0.1


def idx(path):
    b = open(path, "rb").read()
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return torch.frombuffer(bytearray(b[4 + 4 * nd:]), dtype=torch.uint8).reshape(dims)


def block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2, 2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = (idx(f"{a.data}/train-images-idx3-ubyte").float().unsqueeze(1) / 255 - 0.1307) / 0.3081
    y = idx(f"{a.data}/train-labels-idx1-ubyte").long()
    xt = (idx(f"{a.data}/t10k-images-idx3-ubyte").float().unsqueeze(1) / 255 - 0.1307) / 0.3081
    yt = idx(f"{a.data}/t10k-labels-idx1-ubyte").long()
    net = nn.Sequential(*block(1, C1), *block(C1, C2), *block(C2, C3), nn.Flatten(), nn.Linear(9 * C3, 10))
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x, xt = x.contiguous(memory_format=torch.channels_last), xt.contiguous(memory_format=torch.channels_last)
    decay = [p for p in net.parameters() if p.dim() > 1]
    no_decay = [p for p in net.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=LR, momentum=0.9, nesterov=True)
    steps = (60000 + BATCH - 1) // BATCH
    total = steps * 3 // 2  # an epoch and a half
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=total, cycle_momentum=False)
    t_train = time.perf_counter()
    print(f"speedrun.py: data loaded in {t_train - T0:.2f} s; {a.threads} threads, batch {BATCH}, 1.5 epochs"
          f"{', channels_last' if a.channels_last else ''}{', bf16 autocast' if a.bf16 else ''}")
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)
    net.train()
    for step in range(total):
        s = step % steps
        if s == 0:
            perm = torch.randperm(60000)
        i = perm[s * BATCH:(s + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        with cast:
            loss = nn.functional.cross_entropy(net(x[i]), y[i])
        loss.backward()
        opt.step()
        sched.step()
    trained = time.perf_counter() - t_train
    net.eval()  # tested once, at the end
    with torch.no_grad(), cast:
        acc = sum((net(xt[j:j + 100]).argmax(1) == yt[j:j + 100]).sum().item() for j in range(0, 10000, 100)) / 1e4
    at = time.perf_counter() - T0
    print(f"after {total} steps ({total / steps:.2f} epochs): trained in {trained:.2f} s, tested in "
          f"{at - (t_train - T0) - trained:.2f} s")
    print(f"99% reached in {at:.2f} s" if acc >= 0.99 else f"99% not reached ({at:.2f} s)")
    print(f"test accuracy: {100 * acc:.2f}%")


if __name__ == "__main__":
    main()

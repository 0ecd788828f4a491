"""PyTorch's side of tests/interop.sh: the demo's three nets written in PyTorch, a
safetensors reader and writer in a few lines each (Debian packages no python3-safetensors),
and the comparisons.

  interop.py from-tapegrad NET FILE TEST_X TAPEGRAD_LOGITS STEPS
      loads tapegrad's FILE into NET (strict), checks num_batches_tracked == STEPS,
      and compares NET's evaluation-mode logits with tapegrad's
  interop.py half FILE HALF_FILE f16|bf16
      every float tensor of HALF_FILE (tapegrad's) equals FILE's tensor rounded by
      PyTorch's .half() or .bfloat16(), bit for bit; batch norm's counters stay I64
  interop.py from-torch NET DIR
      trains NET 10 steps on DIR/train_x.f32, writes DIR/NET.torch.{f32,f16,bf16}.safetensors
      and the logits of each (the f16 and bf16 ones: of the net with its weights so rounded)
  interop.py compare WHAT EXPECTED GOT
      the largest difference between two files of logits, which must be at most 1e-5
      times the image's largest logit, when that is above 1 (float32's spacing at 112,
      the largest logit here, is 7.6e-6: two sums in other orders differ by more)
"""
import json
import struct
import sys

import torch
from torch import nn

TOLERANCE = 1e-5
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
          "I64": torch.int64}


def load_safetensors(path):
    """The whole file as {name: tensor}: what safetensors.torch.load_file gives."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    header.pop("__metadata__", None)
    return {k: torch.frombuffer(bytearray(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]),
                                dtype=DTYPES[v["dtype"]]).reshape(v["shape"]) for k, v in header.items()}


def save_safetensors(path, tensors, metadata):
    """{name: tensor} as safetensors: the header padded to 8 bytes, the data in order."""
    names = {v: k for k, v in DTYPES.items()}
    header, data, at = {"__metadata__": metadata}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous()
        raw = (t.view(torch.int16) if t.element_size() == 2 else t).numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        data.append(raw)
        at += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(data))


class Residual(nn.Module):
    """tapegrad's tg_model_residual(m, c, c, 1, 1): relu(bn2(conv2(relu(bn1(conv1(x))))) + x)"""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


def make(net):
    """demos/nets.c, layer for layer: the same names in state_dict()"""
    if net == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10))
    if net == "lenet":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), Residual(16),
                         nn.MaxPool2d(2, 2), nn.Conv2d(16, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         Residual(32), nn.MaxPool2d(2, 2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 7 * 7, 10))


def images(path):
    x = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.float32)
    return x.reshape(-1, 1, 28, 28)


def logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def compare(what, expected, got):
    d = (expected - got).abs()
    rel = (d / expected.abs().amax(dim=1, keepdim=True).clamp(min=1)).max().item()
    print(f"{what}: largest logit difference {d.max().item():.3g}, {rel:.3g} of the image's largest logit "
          f"(largest logit {expected.abs().max().item():.3g})")
    return rel <= TOLERANCE


def from_tapegrad(net, path, test_x, tapegrad_logits, steps):
    model = make(net)
    sd = load_safetensors(path)
    # the file also holds the optimizer's and the loop's state (for --resume), under names
    # of their own; the model's tensors are exactly its state_dict's names
    model.load_state_dict({k: sd[k] for k in model.state_dict()}, strict=True)
    rest = sorted(set(sd) - set(model.state_dict()))
    assert all(k.split(".")[0] in ("sgd", "adam", "sched", "train") for k in rest), rest
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            assert v.dtype == torch.int64 and v.shape == () and v.item() == steps, (k, v)
    got = read_logits(tapegrad_logits)
    x = images(test_x)
    if not compare(f"{net}: tapegrad -> PyTorch", logits(model, x), got):
        return False
    # the comparison can fail: one bias off by 1e-3 is seen
    with torch.no_grad():
        list(model.parameters())[-1][3] += 1e-3
    return not compare(f"{net}: (control: one bias 1e-3 off, must differ)", logits(model, x), got)


def half(path, half_path, kind):
    dtype = torch.float16 if kind == "f16" else torch.bfloat16
    full, got = load_safetensors(path), load_safetensors(half_path)
    model = {k: v for k, v in full.items() if k.split(".")[0] not in ("sgd", "adam", "sched", "train")}
    want = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.items()}
    wrong = [k for k in want if k not in got or got[k].dtype != want[k].dtype or not torch.equal(got[k], want[k])]
    print(f"{half_path}: {len(got)} tensors as {kind}, {len(wrong)} unlike PyTorch's rounding {wrong[:3]}")
    return set(got) == set(want) and not wrong


def from_torch(net, d):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = make(net)
    x = images(f"{d}/train_x.f32")
    y = torch.frombuffer(bytearray(open(f"{d}/train_y.i64", "rb").read()), dtype=torch.int64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for s in range(10):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[64 * s:64 * s + 64]), y[64 * s:64 * s + 64]).backward()
        opt.step()
    test = images(f"{d}/test_x.f32")
    sd = model.state_dict()
    for kind, dtype in (("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)):
        half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
        save_safetensors(f"{d}/{net}.torch.{kind}.safetensors", half, {"format": "pt"})
        rounded = make(net)
        rounded.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in half.items()})
        logits(rounded, test).numpy().tofile(f"{d}/{net}.torch.{kind}.logits")
    return True


def read_logits(path):
    return torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.float32).reshape(-1, 10)


def main(argv):
    if argv[1] == "from-tapegrad":
        return from_tapegrad(argv[2], argv[3], argv[4], argv[5], int(argv[6]))
    if argv[1] == "half":
        return half(argv[2], argv[3], argv[4])
    if argv[1] == "from-torch":
        return from_torch(argv[2], argv[3])
    return compare(argv[2], read_logits(argv[3]), read_logits(argv[4]))


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv) else 1)

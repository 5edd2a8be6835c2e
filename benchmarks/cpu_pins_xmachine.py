"""The same pins on two different CPUs: do they train bit-identical weights?

    python benchmarks/cpu_pins_xmachine.py            # on machine A, then on machine B; compare the lines

Needs only torch (no torchvision, no reproexec, no data files), so it runs on a bare machine such as
the GPU box: a ResNet-18 in plain torch.nn, 3 SGD steps on inputs computed from integers (exact on
every CPU), one fresh interpreter per pin set. Each line is `name weights-sha256[:16] last-loss
ATen-level`; a pin set keeps its promise when its hash is the same on both machines.

Measured with torch 2.11.0+cu130 (MKL 2024.2, oneDNN 3.10), threads 1 unless named:

    pin set                                   AMD EPYC, AVX2 only       Intel Xeon, AVX-512 + AMX
                                              L1d 32K, L2 512K          L1d 48K, L2 2M
    ATen avx2, oneDNN AVX2, MKL COMPATIBLE    2aae18f099fcd874          2aae18f099fcd874   same
      the same with 2 threads                 6590f47e19762ef1          6590f47e19762ef1   same
    ATen avx2, oneDNN AVX2, MKL AVX2,STRICT   c4214666fb142edc          97c7c1be43fe9836   differs
    ATen avx2, mkldnn off, MKL COMPATIBLE     3cb222ab446cf457          d39cf56e854f0c27   differs
    ATen avx2, mkldnn off, MKL AVX2,STRICT    9a3bff1cb3ab4331          24554f1fb48386ea   differs
    ATen avx2, oneDNN AVX2, MKL unpinned      c4214666fb142edc          4e5054f51ae3af4e   differs
    nothing pinned                            c4214666fb142edc          be5b6589bf90061d   differs

(MKL reads MKL_CBWR=AVX2 as its AVX2 branch on the Xeon but falls back to AUTO on the EPYC: its ISA
branches exist only on Intel CPUs. The two machines' libtorch_cpu.so were different builds of
2.11.0 — PyPI's and the cu130 index's — and still agreed under the full pin set.)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

BASE = {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PIN_SETS = {
    "aten+onednn+mkl_compatible": {**BASE, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"},
    "aten+onednn+mkl_compatible threads2": {**BASE, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
                                            "XM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "aten+onednn+mkl_avx2_strict": {**BASE, "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"},
    "aten+mkldnn_off+mkl_compatible": {**BASE, "XM_MKLDNN": "0", "MKL_CBWR": "COMPATIBLE"},
    "aten+mkldnn_off+mkl_avx2_strict": {**BASE, "XM_MKLDNN": "0", "MKL_CBWR": "AVX2,STRICT"},
    "aten+onednn": {**BASE, "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "unpinned": {},
}
PIN_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def train() -> None:
    import torch
    import torch.nn as nn

    torch.backends.mkldnn.enabled = os.environ.get("XM_MKLDNN", "1") == "1"
    torch.set_num_threads(int(os.environ.get("XM_THREADS", "1")))
    torch.use_deterministic_algorithms(True)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.d = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else None)

        def forward(self, x):
            r = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(r + (self.d(x) if self.d is not None else x))

    torch.manual_seed(1337)
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    steps = 3
    i = torch.arange(steps * 64 * 3072, dtype=torch.int64)
    x = ((i * 2654435761 + 12345) % 1000003 % 256).float().div(127.5).sub(1).view(steps * 64, 3, 32, 32)
    y = torch.arange(steps * 64) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for k in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x[k * 64:(k + 1) * 64]), y[k * 64:(k + 1) * 64])
        loss.backward()
        opt.step()
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    print(h.hexdigest()[:16], round(loss.item(), 6), torch.backends.cpu.get_cpu_capability())


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--train":
        train()
        return 0
    for name, pins in PIN_SETS.items():
        env = {k: v for k, v in os.environ.items() if k not in PIN_VARS} | pins
        out = subprocess.run([sys.executable, __file__, "--train"], env=env, capture_output=True, text=True)
        print(f"{name:38s} {out.stdout.strip() or out.stderr.strip().splitlines()[-1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

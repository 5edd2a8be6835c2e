"""Weights after a few ResNet-18 training steps under each CPU-math pin set, as sha256s, so two
machines (another CPU, the same torch) can be compared: `python cross_cpu_pins.py OUT.json`."""

import json
import os
import subprocess
import sys

CHILD = r"""
import hashlib, os, sys
import numpy as np
import torch, torchvision
torch.set_num_threads(1)
if os.environ.get("PIN_MKLDNN_OFF") == "1":
    torch.backends.mkldnn.enabled = False
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10)
rs = np.random.RandomState(0)
x = torch.from_numpy(rs.uniform(-1, 1, size=(4, 32, 3, 32, 32)).astype(np.float32))
y = torch.from_numpy(rs.randint(0, 10, size=(4, 32)))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for i in range(4):
    loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
    opt.zero_grad(); loss.backward(); opt.step()
h = hashlib.sha256()
for k, v in sorted(model.state_dict().items()):
    h.update(k.encode()); h.update(v.detach().contiguous().numpy().tobytes())
print(h.hexdigest(), torch.backends.cpu.get_cpu_capability(), float(loss))
"""

SETS = {
    "defaults": {},
    "aten_avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten_avx2+mkldnn_off": {"ATEN_CPU_CAPABILITY": "avx2", "PIN_MKLDNN_OFF": "1"},
    "aten_avx2+onednn_avx2+mkl_avx2_strict": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"},
    "aten_avx2+onednn_avx2+mkl_avx2_strict+mkldnn_off": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT", "PIN_MKLDNN_OFF": "1"},
    "aten_avx2+mkl_avx2_strict+mkldnn_off": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "PIN_MKLDNN_OFF": "1"},
    "aten_avx2+mkl_compatible+mkldnn_off": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "PIN_MKLDNN_OFF": "1"},
    "aten_default+mkl_compatible+mkldnn_off": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "PIN_MKLDNN_OFF": "1"},
}


def main() -> None:
    out = {"cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": "), "results": {}}
    base = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for name, env in SETS.items():
        p = subprocess.run([sys.executable, "-c", CHILD], env={**base, **env}, capture_output=True, text=True)
        out["results"][name] = p.stdout.strip() or p.stderr.strip()[-300:]
        print(name, out["results"][name], flush=True)
    import torch

    out["torch"] = torch.__version__
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

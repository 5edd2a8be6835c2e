"""A small deterministic training script that seeds itself (the shape of many tutorials): the
tests run it as a bring-your-own entrypoint. It writes result.json into REPROEXEC_RUN_DIR."""

import json
import os
import random

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def set_seed(seed: int = 42):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


seed = 42
set_seed(seed)
X = torch.randn(512, 3, 32, 32)
y = torch.randint(0, 10, (512,))


def seed_worker(worker_id):
    np.random.seed(seed)
    random.seed(seed)


g = torch.Generator()
g.manual_seed(seed)
loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, num_workers=0, worker_init_fn=seed_worker, generator=g)
model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()
losses = []
for epoch in range(2):
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach().cpu()))

number = round(sum(losses[:5]), 6)
print(number)  # Use this number to compare runs
out = os.environ.get("REPROEXEC_RUN_DIR", ".")
with open(os.path.join(out, "result.json"), "w") as f:
    json.dump({"loss_sum_first5": number, "losses": losses}, f)

"""Train a small CNN on an image folder: a training script written the way researchers write them.

It knows nothing of reproexec: argparse flags, a DataLoader with worker processes, random
augmentation, timings printed as it goes, a checkpoint at the end, and no seed anywhere. Run by
reproexec (examples/byo/config.yaml) it is reproducible anyway: reproexec seeds its Python process
before this file runs, and `reproexec rerun` compares the checkpoint and the metrics, not the
timings in the log.

    python train.py --data-path DIR --output-dir OUT [--epochs 2] [--workers 2] [--metrics FILE]
"""

import argparse
import json
import os
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def get_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-path", required=True, help="folder with train/<class>/ and val/<class>/ images")
    p.add_argument("--output-dir", default=".", help="where the checkpoint goes")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--metrics", default=None, help="append one JSON line of metrics per epoch here")
    return p.parse_args()


class SmallNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.1),
        )
        self.head = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def main():
    args = get_args()
    normalize = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    train_tf = transforms.Compose([
        transforms.Resize(16),
        transforms.RandomCrop(16, padding=2),
        transforms.RandomRotation(10),
        transforms.ToTensor(),
        normalize,
    ])
    val_tf = transforms.Compose([transforms.Resize(16), transforms.ToTensor(), normalize])
    train_set = datasets.ImageFolder(os.path.join(args.data_path, "train"), train_tf)
    val_set = datasets.ImageFolder(os.path.join(args.data_path, "val"), val_tf)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    val_loader = DataLoader(val_set, batch_size=256, num_workers=args.workers)

    model = SmallNet(len(train_set.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        t0, seen, total_loss = time.time(), 0, 0.0
        for i, (images, target) in enumerate(train_loader):
            loss = criterion(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(target)
            total_loss += loss.item() * len(target)
            if i % 10 == 0:
                print(f"epoch {epoch} [{i}/{len(train_loader)}] loss {loss.item():.4f} "
                      f"{seen / (time.time() - t0):.0f} img/s")
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, target in val_loader:
                correct += (model(images).argmax(1) == target).sum().item()
        acc = correct / len(val_set)
        print(f"epoch {epoch}: train loss {total_loss / seen:.4f}, val acc {acc:.4f}, {time.time() - t0:.1f} s")
        if args.metrics:
            with open(args.metrics, "a") as f:
                f.write(json.dumps({"epoch": epoch, "train_loss": total_loss / seen, "val_acc": acc}) + "\n")
    os.makedirs(args.output_dir, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epochs": args.epochs},
               os.path.join(args.output_dir, "checkpoint.pth"))
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()

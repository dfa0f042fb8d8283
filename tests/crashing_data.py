"""A training set that dies mid-epoch, for the tests of resume."""

import torch


class Interrupted(Exception):
    """Stands for a crash or a killed job."""


class CrashingData(torch.utils.data.Dataset):
    """Healthy images that raise after ``fetches`` items were read: the run dies mid-epoch."""

    def __init__(self, images, fetches):
        self.images, self.fetches, self.count = images, fetches, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        self.count += 1
        if self.count > self.fetches:
            raise Interrupted
        return self.images[index]

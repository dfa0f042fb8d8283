import matplotlib.pyplot as plt
import torch
from pseudoanomaly import presets

yy, xx = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
foreground = (xx**2 + yy**2 < 0.7).expand(8, 1, 256, 256)  # where anomalies may go: a disk
images = (0.5 + 0.2 * xx * yy).expand(8, 1, 256, 256) * foreground  # 8 "normal" images in [0, 1]
synth = presets.zhang2023()  # the paper's recipe: blurred-noise blobs + intensity shift
augmented, masks = synth(images, foreground, generator=torch.Generator().manual_seed(0))

fig, axes = plt.subplots(2, 8, figsize=(12, 3.3), layout="constrained")
for i, (top, bottom) in enumerate(axes.T):
    top.imshow(augmented[i, 0], cmap="gray", vmin=0, vmax=1)
    bottom.imshow(masks[i, 0], cmap="gray", vmin=0, vmax=1)
    top.set_title(f"mask: {masks[i].mean():.1%}", fontsize=14)
plt.setp(axes, xticks=[], yticks=[])
plt.show()

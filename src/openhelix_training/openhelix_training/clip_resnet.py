"""The image backbone of 3D Diffuser Actor: CLIP's ModifiedResNet, returning every stage, and a feature
pyramid over those stages.

The module tree and parameter names are CLIP's (`conv1..3`/`bn1..3` stem, `layer1..4` of bottlenecks whose
`downsample` is an average pool then a 1x1 conv and a batch norm, `attnpool`), because 3D Diffuser Actor's
checkpoints store this backbone's weights under those names. The feature pyramid keeps torchvision's
`FeaturePyramidNetwork` names (`inner_blocks.i.0`, `layer_blocks.i.0`) for the same reason.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

STAGE_NAMES = ("res1", "res2", "res3", "res4", "res5")


class AntiAliasedBottleneck(nn.Module):
    """A ResNet bottleneck (1x1, 3x3, 1x1 -> 4x planes) that downsamples by average pooling after the 3x3
    conv instead of striding it, and pools before the shortcut's 1x1 conv too."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or in_channels != out_channels:
            # key "-1" holds the parameter-free pool, so the conv and norm keep the names "0" and "1"
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
                ("1", nn.BatchNorm2d(out_channels)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.avgpool(self.relu2(self.bn2(self.conv2(y))))
        return self.relu3(self.bn3(self.conv3(y)) + shortcut)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: the mean token, with a learned position table, attends to all positions.
    3D Diffuser Actor never calls it; its weights are part of the released checkpoints."""

    def __init__(self, spatial_dim: int, embed_dim: int, num_heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # B, HW, C
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + self.positional_embedding.to(x.dtype)
        b, n, c = tokens.shape
        heads = self.num_heads

        def split(t):
            return t.view(b, -1, heads, c // heads).transpose(1, 2)

        q = split(self.q_proj(tokens[:, :1]))
        k, v = split(self.k_proj(tokens)), split(self.v_proj(tokens))
        pooled = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c)
        return self.c_proj(pooled)


class ModifiedResNetFeatures(nn.Module):
    """CLIP ModifiedResNet (three-conv stem with an average pool, anti-aliased bottlenecks, attention pool)
    whose forward returns the stem and the four stages: res1 (stride 2, `width` channels) to res5 (stride
    32, 32 x `width`)."""

    def __init__(self, layers: tuple[int, ...], output_dim: int, heads: int, input_resolution: int = 224,
                 width: int = 64):
        super().__init__()
        half = width // 2
        self.conv1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        channels = width
        stages = []
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            stage = [AntiAliasedBottleneck(channels, planes, stride=1 if i == 0 else 2)]
            channels = planes * AntiAliasedBottleneck.expansion
            stage += [AntiAliasedBottleneck(channels, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(input_resolution // 32, channels, heads, output_dim)
        self.stage_channels = (width,) + tuple(width * 2 ** i * AntiAliasedBottleneck.expansion for i in range(4))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.to(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        stem = self.relu3(self.bn3(self.conv3(x)))
        outputs = [stem]
        x = self.avgpool(stem)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            outputs.append(x)
        return dict(zip(STAGE_NAMES, outputs, strict=True))


class FeaturePyramid(nn.Module):
    """A top-down feature pyramid: a 1x1 lateral conv per stage, the coarser level upsampled (nearest) and
    added, then a 3x3 output conv per level; every level ends with `out_channels`."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: int):
        super().__init__()
        self.inner_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1)) for c in in_channels)
        self.layer_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1)) for _ in in_channels)
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(features)
        levels = [features[n] for n in names]
        top_down = self.inner_blocks[-1](levels[-1])
        outputs = [self.layer_blocks[-1](top_down)]
        for i in range(len(levels) - 2, -1, -1):
            lateral = self.inner_blocks[i](levels[i])
            top_down = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self.layer_blocks[i](top_down))
        return dict(zip(names, outputs, strict=True))

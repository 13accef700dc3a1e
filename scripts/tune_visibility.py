"""Choose the external-visibility read-out (neighbourhood radius, calibration) on held-out identities.

    python scripts/tune_visibility.py --weights runs/lite17/best.pt --data runs/ytf68c_pitch [--samples 400]

Takes the validation split (identities the model never trained on) of a build, paints the *training* occluders on
each sample (``data.anchored_occluders`` and the generic ones, every sample occluded), runs the network, and reads
its ``seg`` at the labelled landmarks: a landmark is occluded when its pixel is under the occluder. For each
neighbourhood radius and jaw inset (fractions of the crop side) it prints the ROC AUC and the balanced accuracy at 0.5
of :func:`dsfnet.inference.visibility.landmark_external_visibility`, and on the same samples unoccluded the share of
jaw points 3-13 and of all points read as visible. ``facemask/with_mask`` and the dev set are not used.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def main() -> None:
    import torch

    from dsfnet.model.preprocess import preprocess
    from dsfnet.inference.visibility import dilate_seg, landmark_external_visibility
    from dsfnet.model.checkpoint import model_from_checkpoint
    from dsfnet.train.data import open_dataset
    from visibility import roc_auc

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--templates", default=str(Path(__file__).resolve().parents[2] / "shared/data/occluders/masktheface"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, _ = model_from_checkpoint(args.weights)
    model.eval()
    ds = open_dataset(args.data, model, augment=True, split="val",
                      occlusion={"occlude_anchored": 0.6, "occluder_templates": args.templates})
    idx = np.linspace(0, len(ds) - 1, min(args.samples, len(ds))).astype(int)

    def collect(occlude_prob: float):
        ds.augmenter.config = dataclasses.replace(ds.augmenter.config, occlude_prob=occlude_prob)
        segs, pts, labels = [], [], []
        for start in range(0, len(idx), 32):
            batch = [ds.sample(int(i), np.random.default_rng([7, int(i)])) for i in idx[start:start + 32]]
            x = torch.from_numpy(preprocess(np.stack([b["image"] for b in batch])))
            with torch.no_grad():
                seg = model(x, return_all=True)["seg"][:, 0].numpy()
            for b, sg in zip(batch, seg):
                lm = b["landmarks"][:, :2].astype(np.float64)
                ij = np.clip(np.round(lm).astype(int), 0, sg.shape[0] - 1)
                segs.append(sg)
                pts.append(lm)
                labels.append(b["occluder"][ij[:, 1], ij[:, 0]] > 0.5)
        return segs, pts, np.array(labels)

    occ, clean = collect(1.0), collect(0.0)
    s = occ[0][0].shape[0]
    y = occ[2].reshape(-1)
    print(f"{len(idx)} held-out samples, {y.mean():.1%} of landmarks under an occluder when occluded")

    def read(data, radius, inset):
        segs, pts, _ = data
        return np.array([landmark_external_visibility(g, q, dilated=dilate_seg(g, radius * s), inset=inset * s)
                         for g, q in zip(segs, pts)])

    for radius in (0.0, 0.015, 0.03):
        for inset in (0.0, 0.02, 0.04, 0.06):
            v, vc = read(occ, radius, inset).reshape(-1), read(clean, radius, inset)
            bal = 0.5 * ((v[y] < 0.5).mean() + (v[~y] >= 0.5).mean())
            print(f"radius {radius:.3f} jaw inset {inset:.2f}: occluded AUC {roc_auc(1 - v, y):.3f} balanced acc "
                  f"{bal:.3f}; clean: jaw 3-13 visible {(vc[:, 3:14] >= 0.5).mean():.3f}, all {(vc >= 0.5).mean():.3f}")

if __name__ == "__main__":
    main()

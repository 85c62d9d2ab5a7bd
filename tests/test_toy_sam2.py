"""The toy SAM2's pretraining (rise/toy/sam2.py)."""

import torch



def test_sam2_pretraining_writes_a_checkpoint_the_predictor_loads(tmp_path):
    from rise.toy.sam2 import pretrain_sam2, sam2_report

    out = tmp_path / "sam2.pt"
    cfg = "configs/sam2.1/sam2.1_hiera_t.yaml"
    trained = pretrain_sam2(out, config=cfg, image_size=128, steps=1, batch_size=1)
    assert trained["steps"] == 1
    report = sam2_report(out, config=cfg, image_size=128, n_images=1)
    assert 0 <= report["mask_iou_tight_box"] <= 1 and report["heldout_objects"] >= 2


def test_sam2_loss_trains_every_output_on_the_prompted_object():
    from rise.toy.sam2 import mask_loss

    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, 2:6, 2:6] = True
    good = torch.where(target[0], 10.0, -10.0)
    bad = -good
    all_good = mask_loss(torch.stack([good, good, good])[None], torch.ones(1, 3), target)
    one_good = mask_loss(torch.stack([good, bad, bad])[None], torch.tensor([[1.0, 0.0, 0.0]]), target)
    assert all_good < 0.1 < one_good


# --------------------------------------------------------------------------------------------- policy

"""The offline target datasets do what the course says of them: ImageNet features help a
great deal on photo_patches and much less on digits (a linear probe, 10 examples per class)."""

import pytest
import torch

import xferlib as xl


def probe_accuracy(backbone, train, test):
    xl.seed_everything(0)
    train = xl.few_shot(train.with_transform(backbone.transform), 10, seed=0)
    feats, labels = xl.extract_features(backbone, train, progress=False)
    test_feats, test_labels = xl.extract_features(backbone, test.with_transform(backbone.transform), progress=False)
    head = torch.nn.Linear(backbone.num_features, len(train.classes))
    xl.fit(head, xl.feature_dataset(feats, labels), epochs=30, lr=1e-2, progress=False, seed=0)
    return xl.evaluate(head, xl.feature_dataset(test_feats, test_labels))["accuracy"]


@pytest.mark.parametrize("init_seed", [0, 1, 2])
def test_imagenet_features_help_much_more_on_photos_than_on_digits(lite0, init_seed):
    xl.seed_everything(init_seed)  # the random-init baseline must not depend on test order
    random_init = xl.load_backbone(pretrained=False, image_size=64)
    sets = {
        "photos": (xl.data.photo_patches("train", 20), xl.data.photo_patches("test", 20)),
        "digits": (xl.data.digits("train"), xl.few_shot(xl.data.digits("test"), 20)),
    }
    gain = {}
    for name, (train, test) in sets.items():
        gain[name] = probe_accuracy(lite0, train, test) - probe_accuracy(random_init, train, test)
    assert gain["photos"] > 0.3, gain
    assert gain["photos"] > gain["digits"] + 0.15, gain


def test_photo_regions_has_headroom_at_lesson_defaults():
    """The target for feature extraction against fine-tuning: frozen ImageNet features carry most
    of it but leave room (a probe between 0.55 and 0.88), and neither random features nor the
    patches' intensity histogram come close."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = xl.data.photo_regions("train"), xl.data.photo_regions("test")

    def probe(x_train, x_test):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
        return model.fit(x_train, train.labels).score(x_test, test.labels)

    def features(backbone):
        return [xl.extract_features(backbone, d.with_transform(backbone.transform), progress=False)[0].numpy() for d in (train, test)]

    xl.seed_everything(0)
    pretrained = probe(*features(xl.load_backbone(image_size=96)))
    random_init = probe(*features(xl.load_backbone(pretrained=False, image_size=96)))
    histogram = probe(*[np.stack([np.histogram(im[..., 0], 32, (0, 256))[0] for im in d.images]).astype(float) for d in (train, test)])
    print(f"photo_regions: probe {pretrained:.3f}, random init {random_init:.3f}, histogram {histogram:.3f}")
    assert 0.55 < pretrained < 0.88
    assert random_init < pretrained - 0.3 and histogram < pretrained - 0.2

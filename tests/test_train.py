"""Training: augmentation semantics, UAR, phase freezing, and a real (small) training run."""
from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import tf_keras as keras  # noqa: E402

from dslite_tiny.config import DataConfig, TrainConfig, load_config  # noqa: E402
from dslite_tiny.data.cache import FeatureCache  # noqa: E402
from dslite_tiny.data.layouts import load_dataset  # noqa: E402
from dslite_tiny.models.registry import backbone_layers, create_model  # noqa: E402
from dslite_tiny.models.trained import load_trained  # noqa: E402
from dslite_tiny.train.augment import AugmentSettings, cutmix, sap_lambdas, specaugment  # noqa: E402
from dslite_tiny.train.evaluate import evaluate  # noqa: E402
from dslite_tiny.train.fit import Phase, WeightAverage, phase_schedule, plan_phases, set_trainable  # noqa: E402
from dslite_tiny.measure.metrics import file_votes, uar, uar_change_error  # noqa: E402
from dslite_tiny.train.run import run_training  # noqa: E402

ALWAYS = AugmentSettings(prob_min=1.0, prob_max=1.0)


def test_sapaugment_gives_the_easiest_samples_the_strongest_augmentation():
    losses = np.array([2.0, 0.1, 5.0, 0.7, 1.2, 3.3, 0.05, 4.0])
    lambdas = sap_lambdas(losses, a=0.5, s=10)
    order = np.argsort(losses)
    assert np.all(np.diff(lambdas[order]) <= 0)  # λ falls as the loss rises
    assert lambdas[6] > 0.99 and lambdas[2] == pytest.approx(0.0, abs=1e-9)
    assert np.all((lambdas >= 0) & (lambdas <= 1))


def test_cutmix_mixes_labels_by_pasted_area():
    rng = np.random.default_rng(0)
    x = np.stack([np.full((20, 20, 1), float(i)) for i in range(4)]).astype(np.float32)
    y = np.eye(4, dtype=np.float32)
    mixed_x, mixed_y = cutmix(x, y, np.ones(4), AugmentSettings(prob_min=1.0, prob_max=1.0, cutmix_max=0.5), rng)
    for j in range(4):
        pasted = mixed_x[j] != j
        share = pasted.mean()
        if share:
            (donor,) = set(np.unique(mixed_x[j][pasted]))
            assert share == pytest.approx(0.25)  # a 10×10 square of a 20×20 image
            assert mixed_y[j, j] == pytest.approx(1 - share) and mixed_y[j, int(donor)] == pytest.approx(share)
        assert mixed_y[j].sum() == pytest.approx(1.0)
    unchanged_x, unchanged_y = cutmix(x, y, np.zeros(4), ALWAYS, rng)  # λ = 0: no patch
    assert np.array_equal(unchanged_x, x) and np.array_equal(unchanged_y, y)


def test_specaugment_masks_one_band_and_one_time_span():
    x = np.ones((3, 30, 40, 3), np.float32)
    masked = specaugment(x, np.array([1.0, 0.5, 0.0]), ALWAYS, np.random.default_rng(1))
    rows = (masked[0] == 0).all(axis=(1, 2))
    cols = (masked[0] == 0).all(axis=(0, 2))
    assert rows.sum() == 9 and cols.sum() == 12  # 30 % of each side at λ = 1
    assert np.ptp(np.flatnonzero(rows)) == 8 and np.ptp(np.flatnonzero(cols)) == 11  # contiguous
    assert ((masked[1] == 0).all(axis=(1, 2))).sum() == 4 and np.array_equal(masked[2], x[2])


def test_uar_and_file_votes():
    y_true = np.array([0, 0, 0, 0, 1, 2])
    y_pred = np.array([0, 0, 0, 0, 0, 2])
    assert uar(y_true, y_pred, 3) == pytest.approx((1 + 0 + 1) / 3)
    files, probabilities = file_votes(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]), np.array([5, 5, 7]))
    assert files.tolist() == [5, 7]
    np.testing.assert_allclose(probabilities, [[0.55, 0.45], [0.4, 0.6]])


def test_the_uar_change_error_is_a_paired_bootstrap_over_files():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 600)
    reference = np.where(rng.random(600) < 0.8, labels, rng.integers(0, 4, 600))
    variant = np.where(rng.random(600) < 0.9, reference, rng.integers(0, 4, 600))
    one_chunk_files = np.arange(600)
    # the same predictions differ on no resample
    assert uar_change_error(labels, reference, reference, one_chunk_files, 4) == 0
    # one chunk per file, balanced classes: near the textbook standard error of a paired difference
    difference = (variant == labels).astype(float) - (reference == labels)
    textbook = difference.std(ddof=1) / np.sqrt(600)
    assert abs(uar_change_error(labels, variant, reference, one_chunk_files, 4) / textbook - 1) < 0.15
    # chunks of one file err together: drawn as files, 100 files of six equal chunks are 100 draws, not 600
    files = np.repeat(np.arange(100), 6)
    copied = [np.repeat(a[:100], 6) for a in (labels, variant, reference)]
    as_files = uar_change_error(*copied, files, 4)
    as_chunks = uar_change_error(*copied, np.arange(600), 4)
    assert as_files > 2 * as_chunks
    assert np.isnan(uar_change_error(labels[:0], variant[:0], reference[:0], files[:0], 4))


def test_phases_freeze_and_unfreeze_the_intended_layers():
    model = create_model("mobilenet", input_shape=(32, 32, 3), num_classes=3, units=8, alpha=0.25)
    layers = backbone_layers(model)
    assert set_trainable(model, "head", 0.3) == 0
    assert all(layer.trainable for layer in model.layers if layer.name.startswith("head_"))
    unfrozen = set_trainable(model, "finetune", 0.3)
    tail = layers[len(layers) - int(round(0.3 * len(layers))):]
    assert all(not layer.trainable for layer in layers[: len(layers) - len(tail)])
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in tail)
    assert unfrozen == sum(not isinstance(layer, keras.layers.BatchNormalization) for layer in tail)
    assert set_trainable(model, "finetune", 5) == sum(
        not isinstance(layer, keras.layers.BatchNormalization) for layer in layers[-5:])
    assert set_trainable(model, "finetune", 1.0) == sum(  # 1.0 is the whole backbone, not one layer
        not isinstance(layer, keras.layers.BatchNormalization) for layer in layers)
    # Frozen means frozen: exactly the tail's non-BN weights and the head train, and a step changes none
    # of the frozen layers (random-init activations vanish in the tail, so only the head visibly moves).
    set_trainable(model, "finetune", 0.3)
    expected = {w.name for layer in tail if not isinstance(layer, keras.layers.BatchNormalization)
                for w in layer.trainable_weights}
    expected |= {w.name for layer in model.layers if layer.name.startswith("head_") for w in layer.trainable_weights}
    assert {w.name for w in model.trainable_weights} == expected
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy")
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    x = np.random.default_rng(0).standard_normal((8, 32, 32, 3)).astype(np.float32)
    model.train_on_batch(x, np.eye(3)[np.arange(8) % 3])
    changed = {layer.name for layer in model.layers
               if any(not np.array_equal(a, b) for a, b in zip(before[layer.name], layer.get_weights()))}
    assert "head_dense" in changed and "head_predictions" in changed
    assert not changed & {layer.name for layer in layers[: len(layers) - len(tail)]}
    assert not changed & {layer.name for layer in tail if isinstance(layer, keras.layers.BatchNormalization)}
    assert [p.trainable for p in plan_phases(load_config(TrainConfig, ("t", {"weights": "imagenet"}), stage="train"))] \
        == ["head", "finetune"]
    assert [p.trainable for p in plan_phases(load_config(TrainConfig, stage="train"))] == ["all"]


@pytest.fixture(scope="module")
def trained_dscnn(tmp_path_factory):
    from dslite_tiny.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("train")
    spec = make_demo_dataset(root / "data", clips_per_class=40, n_speakers=5, sr=16000, seed=3)
    data = load_config(DataConfig, spec, stage="data")
    config = load_config(TrainConfig, "mcu-dscnn", ("test", {"epochs": 30}), stage="train")
    cache = FeatureCache(root / "cache")
    result = run_training(data, config, out_dir=root / "model", cache=cache)
    return result, data, cache


@pytest.mark.parametrize("preset,overrides,shape", [
    ("mlperf-dscnn", {}, (10, 49, 1)), ("mcu-dscnn", {"frontend": "kws-40x49"}, (40, 49, 1))])
def test_the_keyword_spotting_presets_train_an_epoch(demo_data, tmp_path, preset, overrides, shape):
    """MLPerf Tiny's DS-CNN on its MFCC input, and mcu-dscnn on the 16 kHz log-mel 40×49 (the synthetic 8 kHz
    clips resampled): one epoch through the real training run, the saved model takes the frontend's shape."""
    data = load_config(DataConfig, demo_data, stage="data")
    config = load_config(TrainConfig, preset, ("test", {"epochs": 1, **overrides}), stage="train")
    result = run_training(data, config, out_dir=tmp_path / "model", cache=FeatureCache(tmp_path / "cache"))
    trained = load_trained(result.path)
    assert trained.model.input_shape == (None, *shape) and trained.frontend_config.image_shape == shape
    assert len(result.history) == 1 and 0.0 <= result.history[0]["devel_uar"] <= 1.0
    if preset == "mlperf-dscnn":  # the reference's head: pooling, dropout, classifier; 23,756 weights for 12 classes
        assert [layer.name for layer in trained.model.layers[-3:]] == ["head_pool", "head_dropout", "head_predictions"]
        reference = create_model("dscnn_mlperf", input_shape=shape, num_classes=12, units=0, dropout=0.4)
        assert sum(int(np.prod(w.shape)) for w in reference.trainable_weights) == 23_756


def test_training_the_dscnn_beats_chance_by_far(trained_dscnn):
    result, data, cache = trained_dscnn
    report = evaluate(load_trained(result.path), load_dataset(data), split="test", cache=cache)
    assert report["chunks"]["uar"] >= 0.7  # chance is 0.2 (5 classes), held-out speakers
    assert result.best["devel_uar"] == max(h["devel_uar"] for h in result.history)
    assert len(result.history) == 30


def test_model_sidecar_holds_what_later_stages_need(trained_dscnn):
    result, _, _ = trained_dscnn
    sidecar = json.loads(result.path.with_suffix(".json").read_text())
    assert sidecar["classes"] == ["am_tone", "chirp_down", "chirp_up", "harmonic", "noise_burst"]
    assert sidecar["input"] == {"shape": [64, 64, 1], "dtype": "float32"}
    assert sidecar["frontend"]["color_map"] == "gray" and sidecar["normalization"] == "tf"
    assert sidecar["backbone"] == "dscnn" and sidecar["train"]["epochs"] == 30
    assert len(sidecar["history"]) == 30 and sidecar["best"]["epoch"] >= 1
    assert {"tensorflow", "tf_keras", "dslite_tiny"} <= set(sidecar["versions"])
    assert sidecar["data"]["speakers"]["test"] and sidecar["data"]["files"]["train"]["chirp_up"] > 0


@pytest.mark.parametrize("schedule, warmup, at_steps", [
    ("cosine", 1.0, {0: 1e-4, 10: 1e-3, 100: 1e-5}),  # warm-up from a tenth, then down to 1 %
    ("cosine", 0.0, {0: 1e-3, 100: 1e-5}),
    ("constant", 2.0, {0: 1e-4, 20: 1e-3, 100: 1e-3}),
])
def test_phase_learning_rate_schedules(schedule, warmup, at_steps):
    config = load_config(TrainConfig, "mcu-dscnn", ("test", {"lr_schedule": schedule, "warmup_epochs": warmup}),
                         stage="train")
    rate = phase_schedule(config, Phase("train", 10, 1e-3, "all"), epoch_steps=10)
    for step, expected in at_steps.items():
        assert float(rate(step)) == pytest.approx(expected, rel=1e-3), step


def test_the_weight_average_lags_the_weights_and_is_applied_only_inside_its_block():
    import tf_keras as keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.zeros((2, 1), np.float32)])
    average = WeightAverage(model, decay=0.9)
    model.set_weights([np.ones((2, 1), np.float32)])
    average.update()  # the decay warms up: (1 + 1) / (10 + 1), so the random start does not dominate
    assert float(average.average[0][0, 0]) == pytest.approx(9 / 11)
    for _ in range(200):
        average.update()
    model.set_weights([np.full((2, 1), 3.0, np.float32)])
    average.update()  # the decay is capped at 0.9 now: one step moves the average a tenth of the way
    assert float(average.average[0][0, 0]) == pytest.approx(1.2, abs=1e-6)
    with average.applied():
        assert float(model.get_weights()[0][0, 0]) == pytest.approx(1.2, abs=1e-6)
    assert float(model.get_weights()[0][0, 0]) == 3.0


def test_a_teacher_softens_the_targets_and_trains_a_student(trained_dscnn, tmp_path):
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.data.features import compute_features
    from dslite_tiny.train.distill import load_teacher

    result, data, cache = trained_dscnn
    dataset = load_dataset(data)
    teacher_model = load_trained(result.path)
    frontend = Frontend(teacher_model.frontend_config)
    x = frontend.model_input(compute_features(dataset, frontend, splits=["devel"], cache=cache).mel_db[:8])
    y = np.eye(5, dtype=np.float32)[np.arange(8) % 5]
    p = teacher_model.model(x, training=False).numpy()

    def teacher(weight: float, temperature: float):
        return load_teacher([str(result.path)], weight=weight, temperature=temperature,
                            classes=dataset.classes, frontend=frontend.config, dataset=dataset)
    np.testing.assert_allclose(teacher(0.0, 2.0).targets(x, y), y)
    np.testing.assert_allclose(teacher(1.0, 1.0).targets(x, y), p, atol=1e-5)
    soft = teacher(1.0, 4.0).targets(x, y)
    entropy = [-(q * np.log(np.clip(q, 1e-12, 1))).sum(axis=1) for q in (p, soft)]
    assert (soft.argmax(axis=1) == p.argmax(axis=1)).all() and (entropy[1] > entropy[0]).all()
    np.testing.assert_allclose(teacher(0.5, 4.0).targets(x, y), 0.5 * y + 0.5 * soft, atol=1e-6)

    losses = {}
    for name, teachers in (("student", [str(result.path)]), ("alone", [])):
        config = load_config(TrainConfig, "mcu-dscnn", ("test", {"epochs": 1, "units": 8, "teacher": teachers}),
                             stage="train")
        run = run_training(data, config, out_dir=tmp_path / name, cache=cache)
        assert json.loads(run.path.with_suffix(".json").read_text())["train"]["teacher"] == teachers
        losses[name] = run.history[0]["loss"]
    assert losses["student"] != pytest.approx(losses["alone"], rel=1e-3)  # same seed and batches, other targets


def test_a_teacher_that_does_not_fit_the_student_or_saw_its_test_speakers_is_refused(trained_dscnn):
    import dataclasses

    from dslite_tiny.config import ConfigError
    from dslite_tiny.errors import UserError
    from dslite_tiny.train.distill import for_fold, load_teacher

    result, data, _ = trained_dscnn
    dataset = load_dataset(data)
    frontend = load_trained(result.path).frontend_config
    path = str(result.path)

    def refusal(paths=(path,), classes=dataset.classes, fe=frontend, ds=dataset) -> str:
        with pytest.raises((UserError, ConfigError)) as caught:
            load_teacher(list(paths), weight=0.5, temperature=2.0, classes=classes, frontend=fe, dataset=ds)
        return str(caught.value)
    assert "are not the student's" in refusal(classes=dataset.classes[::-1])
    assert "another frontend" in refusal(fe=dataclasses.replace(frontend, top_db=40.0))
    heard = dataset.speakers("train")[0]
    leaky = load_dataset(dataclasses.replace(data, test_speakers=[heard], devel_speakers=dataset.speakers("devel")))
    assert f"cannot teach: the test split shares speakers {heard} with the train and devel splits of this teacher" \
        in refusal(ds=leaky)
    assert "only 'dslite-tiny cv' fills in {fold}" in refusal(paths=["/models/{fold}-s0/model.h5"])
    assert for_fold(["/cv/{fold}-s0/model.h5", "/x.h5"], "theo") == ["/cv/theo-s0/model.h5", "/x.h5"]

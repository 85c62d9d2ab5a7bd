"""Model loading (Hub id or local path, same code for demo and paper) and the offline demo models.

Loading never reaches a hub silently: an id that is neither a local folder nor in the local
cache fails at once with a message naming the setting, when offline (`HF_HUB_OFFLINE=1`) or not.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from rise.errors import MissingResourceError

log = logging.getLogger(__name__)

# Qwen2.5-VL's special tokens; their ids must match the config's *_token_id fields.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2-VL's chat template, images and text only (the demo never feeds video).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' or 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def is_local(ref: str) -> bool:
    return Path(ref).exists()


def check_hub_or_path(ref: str, setting: str, filename: str = "config.json") -> None:
    """Fail fast unless `ref` is a local path or a Hub id already in the local cache."""
    if is_local(ref):
        return
    looks_like_path = ref.startswith((".", "/", "~")) or ref.count("/") != 1
    if looks_like_path:
        raise MissingResourceError(f"{setting}: '{ref}' does not exist (expected a local model folder or file).")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref, filename)
    if isinstance(cached, str):
        return
    raise MissingResourceError(
        f"{setting}: model '{ref}' is not a local path and is not in the Hugging Face cache "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}). Download it on a machine with access "
        f"(`huggingface-cli download {ref}`) or set {setting} to a local folder."
    )


# ---------------------------------------------------------------------------------------------
# Policy (Qwen2.5-VL)
# ---------------------------------------------------------------------------------------------

def load_policy(ref: str, setting: str = "models.policies", *, dtype=None, device="cpu",
                attn_implementation: str | None = None):
    """Returns (model, processor) for a Qwen2.5-VL Hub id or local folder.

    On a GPU the weights are read straight onto `device` (no full copy in host memory, which
    matters when 8 ranks load at once). `device=None` leaves placement to DeepSpeed ZeRO-3.
    `attn_implementation` (both towers): transformers' own default (sdpa) when None."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    check_hub_or_path(ref, setting)
    processor = AutoProcessor.from_pretrained(ref)
    processor.tokenizer.padding_side = "left"  # batched generation
    device = torch.device(device) if device is not None else None
    placement = {"device_map": {"": device}} if device is not None and device.type == "cuda" else {}
    if attn_implementation:
        placement["attn_implementation"] = attn_implementation
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(ref, dtype=dtype or torch.float32, **placement)
    return (model if device is None else model.to(device)), processor


def encode_each_image_once(model) -> None:
    """Makes a Qwen2.5-VL model run its vision tower once per distinct image of a batch.

    GRPO's batches repeat each prompt's image once per completion (8 times in the paper), in
    generation's prefill, the reference forward and the policy's forward and backward. The image
    features of a repeated image are computed once and reused; autograd sums the gradient of
    every use, so the loss and the gradients are those of encoding each copy (up to float
    rounding: `tests/test_levers.py`). Patches the model's own `get_image_features` (the one
    entry its forward calls); state dict and saving are untouched."""
    inner = getattr(model, "module", model).model  # a DeepSpeed engine holds the model as .module
    if getattr(inner, "_encodes_each_image_once", False):
        return
    encode = inner.get_image_features

    def get_image_features(pixel_values, image_grid_thw=None, **kwargs):
        # the forward asks for the output object (return_dict=True); anything else goes through as is
        if image_grid_thw is None or len(image_grid_thw) < 2 or kwargs.get("return_dict") is not True:
            return encode(pixel_values, image_grid_thw, **kwargs)
        grids = image_grid_thw.tolist()
        patches = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
        first, which = [], []  # the first row of each distinct image; each row's distinct image
        for row, (grid, image) in enumerate(zip(grids, patches)):
            same = next((i for i, j in enumerate(first) if grids[j] == grid and torch.equal(patches[j], image)), None)
            if same is None:
                same = len(first)
                first.append(row)
            which.append(same)
        if len(first) == len(grids):
            return encode(pixel_values, image_grid_thw, **kwargs)
        out = encode(torch.cat([patches[j] for j in first]), image_grid_thw[first], **kwargs)
        features = out.pooler_output
        out.pooler_output = tuple(features[i] for i in which)
        out.last_hidden_state = None  # pre-merge states of the distinct images only: not the batch's
        return out

    inner.get_image_features = get_image_features
    inner._encodes_each_image_once = True


def _train_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


# The published Qwen2.5-VL configs (Hub config.json), for building full-size models with random
# weights where nothing can be downloaded (GPU benchmarks).
QWEN25_VL_PUBLISHED = {
    "3b": dict(text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                         num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                         tie_word_embeddings=True),
               vision_out=2048),
    "7b": dict(text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                         tie_word_embeddings=False),
               vision_out=3584),
}


def build_policy_from_published_config(out_dir: str | Path, size: str, corpus: list[str], *, image_size: int = 840,
                                       dtype=torch.bfloat16) -> Path:
    """Qwen2.5-VL-3B/7B architecture with random weights and a small local tokenizer (ids fit the vocab)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    spec = QWEN25_VL_PUBLISHED[size]
    small = build_tiny_policy(out_dir, corpus, image_size=image_size)  # tokenizer + processor
    tiny = Qwen2_5_VLConfig.from_pretrained(small)
    text = dict(spec["text"], rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                bos_token_id=tiny.text_config.bos_token_id, eos_token_id=tiny.text_config.eos_token_id,
                pad_token_id=tiny.text_config.pad_token_id, rms_norm_eps=1e-6)
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           out_hidden_size=spec["vision_out"], patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                           tokens_per_second=2),
        image_token_id=tiny.image_token_id, video_token_id=tiny.video_token_id,
        vision_start_token_id=tiny.vision_start_token_id, vision_end_token_id=tiny.vision_end_token_id,
        tie_word_embeddings=spec["text"]["tie_word_embeddings"],
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
    model.generation_config.eos_token_id = tiny.text_config.eos_token_id
    model.generation_config.pad_token_id = tiny.text_config.pad_token_id
    model.save_pretrained(out_dir)
    return Path(out_dir)


def build_tiny_policy(out_dir: str | Path, corpus: list[str], *, seed: int = 0, image_size: int = 112) -> Path:
    """A Qwen2.5-VL with random weights and a locally trained tokenizer, loadable by `load_policy`."""
    from transformers import (
        PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor, Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    raw = _train_tokenizer(corpus, vocab_size=1024)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        additional_special_tokens=QWEN_SPECIAL_TOKENS, chat_template=QWEN_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=pixels, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=pixels)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor, chat_template=QWEN_CHAT_TEMPLATE)
    head_dim = 16
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            # mrope sections split head_dim/2 rotary frequencies over (time, height, width)
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == head_dim
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny policy: %.1fM parameters -> %s", n_params / 1e6, out)
    return out


# ---------------------------------------------------------------------------------------------
# CLIP (open_clip)
# ---------------------------------------------------------------------------------------------

TINY_CLIP_NAME = "RISE-tiny-CLIP"
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip() -> None:
    """Makes open_clip know the tiny CLIP architecture the demo and the toy build from scratch."""
    from open_clip.factory import _MODEL_CONFIGS

    _MODEL_CONFIGS.setdefault(TINY_CLIP_NAME, TINY_CLIP_CONFIG)


def load_clip(model_name: str, pretrained: str | None, setting: str = "models.clip", device: str = "cpu"):
    """Returns (model, preprocess, tokenizer). `pretrained` is an open_clip tag or a local file."""
    import open_clip

    register_tiny_clip()
    if pretrained and not Path(pretrained).exists():
        if pretrained.startswith((".", "/")) or pretrained.endswith((".pt", ".bin", ".safetensors")):
            raise MissingResourceError(f"{setting}.pretrained: '{pretrained}' does not exist.")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in tags:
            raise MissingResourceError(f"{setting}: open_clip has no weights '{pretrained}' for {model_name} (known: {tags}).")
        cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
        hub = cfg.get("hf_hub", "").rstrip("/")
        if hub:
            from huggingface_hub import try_to_load_from_cache

            found = any(isinstance(try_to_load_from_cache(hub, f), str)
                        for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
            if not found:
                raise MissingResourceError(
                    f"{setting}: CLIP weights {model_name}/{pretrained} are not in the local cache "
                    f"(hub repo {hub}); download them first or set {setting}.pretrained to a local file.")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained or None, device=device)
    except RuntimeError as exc:  # unknown model name
        raise MissingResourceError(f"{setting}.model: {exc}") from exc
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name)


def build_tiny_clip(out_file: str | Path, seed: int = 0) -> Path:
    import open_clip

    register_tiny_clip()
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    return out


# ---------------------------------------------------------------------------------------------
# SAM2
# ---------------------------------------------------------------------------------------------

def sam2_overrides(image_size: int) -> list[str]:
    # image_size is tied to the prompt encoder's embedding grid (stride 16 backbone)
    return [f"++model.image_size={image_size}"]


def load_sam2(config: str, checkpoint: str, image_size: int = 1024, setting: str = "models.sam2", device: str = "cpu"):
    """Returns a SAM2ImagePredictor for a package config name and a local checkpoint (or Hub id)."""
    from sam2.build_sam import build_sam2, build_sam2_hf
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    if Path(checkpoint).exists():
        model = build_sam2(config, ckpt_path=checkpoint, device=device,
                           hydra_overrides_extra=sam2_overrides(image_size))
    elif checkpoint.count("/") == 1 and not checkpoint.endswith(".pt"):
        check_hub_or_path(checkpoint, f"{setting}.checkpoint", filename="config.yaml")
        model = build_sam2_hf(checkpoint, device=device)
    else:
        raise MissingResourceError(f"{setting}.checkpoint: '{checkpoint}' does not exist (expected a SAM2 .pt file "
                                   "from the SAM2 release, or a Hub id such as facebook/sam2.1-hiera-large).")
    predictor = SAM2ImagePredictor(model)
    # the predictor hard-codes the backbone grid of a 1024 px model; derive it from the size used
    size = model.image_size
    predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
    return predictor


def build_tiny_sam2(out_file: str | Path, config: str, image_size: int, seed: int = 0) -> Path:
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    model = build_sam2(config, ckpt_path=None, device="cpu", hydra_overrides_extra=sam2_overrides(image_size))
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, out)
    return out


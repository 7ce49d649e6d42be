"""Images into a vision-language model's inputs: the processor, the chat template, the image tokens.

Transformers' own recipe (``AutoProcessor`` + ``apply_chat_template``) is used whenever it
loads. It does not load everywhere: the Qwen VL processors bundle a video processor, and
transformers' video processors need torchvision, which has no build for the CPU-only torch
this project pins (PyPI's torchvision for torch 2.13 is a CUDA build that fails to load
beside the CPU torch). Without it, the same inputs are assembled from the parts the
processor itself uses: the image processor (its Pillow backend), the tokenizer, the chat
template, and one ``<|image_pad|>`` per merged patch (``image_grid_thw.prod() //
merge_size**2``), exactly as ``Qwen2VLProcessor.replace_image_token`` expands them.

The image for the load check is generated, never read from disk, so the check needs no file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from adapters.errors import ModelCheckError
from store.errors import UsageError

IMAGE_TOKEN = "<|image_pad|>"
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json",
                   "chat_template.jinja", "chat_template.json")


def open_image(path: str | Path):
    """An RGB image from ``path``; one clear error when it is not an image Pillow reads."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise UsageError(f"image {path} does not exist", "pass the path of a PNG or JPEG file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"{path} is not an image this tool reads ({type(e).__name__})",
                         "pass a PNG, JPEG, WebP or GIF file") from None


def probe_image(size: int = 32):
    """A small deterministic RGB image: a gradient, so every patch differs."""
    from PIL import Image

    img = Image.new("RGB", (size, size))
    img.putdata([((7 * x) % 256, (11 * y) % 256, (5 * (x + y)) % 256) for y in range(size) for x in range(size)])
    return img


def image_inputs(folder: Path, model, tokenizer, prompt: str, image) -> dict[str, torch.Tensor]:
    """Model inputs for one user turn holding ``image`` then ``prompt``, with the chat
    template's generation prompt: what transformers' VL examples feed ``generate``."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    processor = _auto_processor(folder)
    if processor is not None:
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return dict(processor(text=[text], images=[image], return_tensors="pt"))
    return _assembled_inputs(folder, model, tokenizer, messages, image)


def _auto_processor(folder: Path):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(folder)
    except ImportError:  # the video processor needs torchvision (see the module docstring)
        return None


def _assembled_inputs(folder: Path, model, tokenizer, messages: list, image) -> dict[str, torch.Tensor]:
    from transformers import AutoImageProcessor

    if not (folder / "preprocessor_config.json").is_file():
        raise ModelCheckError("the model has no preprocessor_config.json, so images cannot be prepared",
                              "import the model with its processor files")
    image_processor = AutoImageProcessor.from_pretrained(folder)
    pixels = image_processor(images=[image], return_tensors="pt")
    template = _chat_template(folder)
    text = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                         tokenize=False)
    merge = getattr(image_processor, "merge_size", None) or model.config.vision_config.spatial_merge_size
    count = int(pixels["image_grid_thw"][0].prod()) // merge ** 2
    if text.count(IMAGE_TOKEN) != 1:
        raise ModelCheckError(f"the chat template gives {text.count(IMAGE_TOKEN)} image placeholders for "
                              "one image", "check the model's chat template")
    text = text.replace(IMAGE_TOKEN, IMAGE_TOKEN * count)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    image_id = model.config.image_token_id
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == image_id).int(),
            "pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}


def _chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = folder / "chat_template.json"
    if as_json.is_file():
        template = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    return None  # the tokenizer's own

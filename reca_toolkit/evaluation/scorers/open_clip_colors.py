"""GenEval's colour classifier: zero-shot CLIP (open_clip ViT-L-14 with
OpenAI weights) over ten colour names.

Each detected object is pasted onto a #999 grey canvas through its mask,
cropped to its box and classified against, per colour, the mean of three
normalised text embeddings ("a photo of a {c} {object}", "a photo of a
{c}-colored {object}", "a photo of a {c} object"). open_clip is imported
on first use; the weights come from a local ``.safetensors`` file (e.g.
``open_clip_model.safetensors`` of the ``timm/vit_large_patch14_clip_224.
openai`` hub repository).
"""
import torch
import torch.nn.functional as F
from PIL import Image

from reca_toolkit.registry import SCORERS
from reca_toolkit.evaluation.scorers.base import (file_sha256,
                                                  load_state_dict,
                                                  package_version)

GENEVAL_COLORS = ('red', 'orange', 'yellow', 'green', 'blue', 'purple',
                  'pink', 'brown', 'black', 'white')
TEMPLATES = ('a photo of a {c} {name}', 'a photo of a {c}-colored {name}',
             'a photo of a {c} object')


@SCORERS.register_module()
class OpenCLIPColorClassifier:
    """Args:
        checkpoint: local weights of ``arch``.
        arch: the open_clip architecture name.
        colors: the colour vocabulary, GenEval's by default.
        background: the canvas objects are pasted on (GenEval ``#999``).
        device: where CLIP runs.
    """

    def __init__(self, checkpoint, arch='ViT-L-14', colors=GENEVAL_COLORS,
                 background='#999', device='cuda'):
        self.checkpoint = str(checkpoint)
        self.arch = arch
        self.colors = tuple(colors)
        self.background = background
        self.device = device
        self.model = None
        self.classifiers = {}

    def info(self):
        return dict(name='OpenCLIPColorClassifier',
                    open_clip=package_version('open_clip_torch'),
                    arch=self.arch, checkpoint=self.checkpoint,
                    checkpoint_sha256=file_sha256(self.checkpoint),
                    colors=list(self.colors), background=self.background)

    def build(self):
        import open_clip
        model, _, self.preprocess = open_clip.create_model_and_transforms(
            self.arch, pretrained=None)
        model.load_state_dict(load_state_dict(self.checkpoint))
        self.tokenizer = open_clip.get_tokenizer(self.arch)
        return model.to(self.device).eval()

    @torch.no_grad()
    def classifier(self, name):
        if name not in self.classifiers:
            weights = []
            for color in self.colors:
                texts = self.tokenizer([t.format(c=color, name=name)
                                        for t in TEMPLATES]).to(self.device)
                emb = F.normalize(self.model.encode_text(texts), dim=-1)
                weights.append(F.normalize(emb.mean(0), dim=-1))
            self.classifiers[name] = torch.stack(weights, dim=1)
        return self.classifiers[name]

    @torch.no_grad()
    def __call__(self, image, detections, classname):
        if self.model is None:
            self.model = self.build()
        image = Image.fromarray(image)
        blank = Image.new('RGB', image.size, self.background)
        crops = []
        for det in detections:
            crop = image if det.mask is None else Image.composite(
                image, blank, Image.fromarray(det.mask))
            crops.append(self.preprocess(crop.crop(det.box[:4])))
        feats = F.normalize(self.model.encode_image(
            torch.stack(crops).to(self.device)), dim=-1)
        picks = (feats @ self.classifier(classname)).argmax(1)
        return [self.colors[int(i)] for i in picks]

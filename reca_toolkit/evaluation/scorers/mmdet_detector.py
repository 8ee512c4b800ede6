"""GenEval's detector, Mask2Former Swin-S on COCO, through mmdet.

Built on the user's machine only: mmdet and mmcv are imported when the
detector is first called. The checkpoint is loaded by this wrapper from
``.safetensors`` or with ``torch.load(weights_only=True)`` -- mmdet's own
loader would unpickle it. For the official environment (mmdet 2.x, mmcv-full
1.7) use ``GenEvalMetric(external_command=...)`` instead.
"""
from pathlib import Path

import numpy as np

from reca_toolkit.registry import SCORERS
from reca_toolkit.evaluation.scorers.base import (Detection, file_sha256,
                                                  load_state_dict,
                                                  package_version)

OBJECT_NAMES = (Path(__file__).resolve().parents[1] / 'prompt_files' /
                'geneval_object_names.txt')


@SCORERS.register_module()
class MMDetDetector:
    """Args:
        config: the mmdet config file (GenEval:
            ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py``).
        checkpoint: its weights (GenEval's ``..._20220504_001756-743b7d99``,
            re-saved as ``.safetensors`` if ``weights_only`` refuses it).
        class_names: label-ordered class names; GenEval's by default.
        device: where the detector runs (GenEval asserts CUDA).
    """

    def __init__(self, config, checkpoint, class_names=None, device='cuda'):
        self.config = str(config)
        self.checkpoint = str(checkpoint)
        names = Path(class_names or OBJECT_NAMES).read_text().splitlines()
        self.class_names = [n.strip() for n in names if n.strip()]
        self.device = device
        self.model = None

    def info(self):
        return dict(name='MMDetDetector', mmdet=package_version('mmdet'),
                    mmcv=package_version('mmcv') or package_version(
                        'mmcv-full'),
                    config=self.config, checkpoint=self.checkpoint,
                    checkpoint_sha256=file_sha256(self.checkpoint))

    def build(self):
        from mmdet.apis import init_detector
        model = init_detector(self.config, checkpoint=None,
                              device=self.device)
        model.load_state_dict(load_state_dict(self.checkpoint))
        return model.eval()

    def __call__(self, image):
        from mmdet.apis import inference_detector
        if self.model is None:
            self.model = self.build()
        # mmdet reads files as BGR, as GenEval feeds it.
        result = inference_detector(self.model,
                                    np.ascontiguousarray(image[..., ::-1]))
        if hasattr(result, 'pred_instances'):  # mmdet 3.x
            inst = result.pred_instances.cpu().numpy()
            masks = getattr(inst, 'masks', [None] * len(inst.scores))
            return [Detection(self.class_names[int(label)], float(score),
                              tuple(float(v) for v in box), mask)
                    for box, score, label, mask in zip(
                        inst.bboxes, inst.scores, inst.labels, masks)]
        bboxes, segms = result if isinstance(result, tuple) else (result,
                                                                  None)
        detections = []
        for label, boxes in enumerate(bboxes):
            for k, box in enumerate(boxes):
                mask = None if segms is None else np.asarray(segms[label][k])
                detections.append(Detection(
                    self.class_names[label], float(box[4]),
                    tuple(float(v) for v in box[:4]), mask))
        return detections
